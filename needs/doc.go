// Package needs is berth's shared vocabulary: needs, instances, services and
// masters, their states and transitions, and the validation of everything a
// user declares. It does no I/O and imports nothing of berth's.
//
// # Needs and instances
//
// A [Need] says what should run: a command, how many instances, which
// protocols each instance gets a port for, extra environment and an optional
// machine pin. Instance i of need "web" is named "web.i" (see [InstanceName]).
// Every placement of an instance on a master gets a fresh allocation id; a
// report that carries an allocation id other than the instance's current one
// is stale and must never change the instance.
//
// # Instance states
//
//	pending ──grant──▶ starting ──approved──▶ running
//	 ▲  ▲                 │                      │
//	 │  │             rejected/exit            exit
//	 │  │                 ▼                      ▼
//	 │  └──── due ───── backoff ◀────────────────┘
//	 │
//	 └── master lost (after its grace) or no longer runs it ── starting, running
//
//	any placed state ──scale down / need rm──▶ stopping ──exited──▶ (dropped)
//
// The back-off before an instance that keeps failing is placed again grows
// from [BackoffMin] to [BackoffMax] (see [BackoffDelay]) and resets once an
// instance has run for [StableAfter].
package needs
