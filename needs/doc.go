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
//	 └── master lost (not heard from for its TTL) or no longer runs it ── starting, running
//
//	any placed state ──scale down / need rm──▶ stopping ──exited──▶ (dropped)
//
// The back-off before an instance that keeps failing is placed again follows
// the need's [RestartPolicy] (nil: the defaults, 100 ms doubling to 30 s,
// see [BackoffDelay]); the failure count starts over once an instance has
// run for ResetAfter (default [StableAfter]). LocalAttempts says how many
// consecutive failures are retried on the same master before placement
// prefers another one.
//
// # Handoff
//
// While its master drains, a running instance may carry a second placement,
// its [Handoff], on another master. The handoff has its own allocation id;
// once it is approved it becomes the instance's placement ([Instance.Promote])
// and the old allocation is stopped.
package needs
