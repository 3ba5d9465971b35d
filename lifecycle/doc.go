// Package lifecycle is the lanmanager's core: the life of every instance,
// from pending to running and back, as one state machine with effects.
//
// A [State] holds the needs, the instances, the drained masters and the
// approvals under way. [State.Step] takes one [Event] (a master's report, a
// grant decided by the placer, a port check's result, a master lost, a tick
// of the clock, a change the API persisted) and the time it happens, changes
// the state, and adds to an [Effects] what the world must be told: records
// to persist, frames to send to masters, port checks to run, retries to
// schedule. It does no I/O, reads no clock and draws no random numbers
// (allocation ids come in the events), so a test replays any sequence of
// events and checks the result; package lan applies the effects: the
// records of many events in one fsync'd transaction, the frames after it.
//
// Every change of an instance's state goes through one function that checks
// it against [Table], the transitions this package allows; the diagram in
// docs/architecture.md is drawn from that table ([Diagram]), and a test
// keeps the two equal.
//
// Events that no longer apply are refused without changing anything: a
// report that names an allocation other than the instance's current one or
// its handoff's (fencing: the master is told to stop it), a report from a
// master that does not hold the allocation, a check result for a placement
// that moved on, a grant for an instance that is no longer pending.
//
// Not thread-safe: the owner (lan.Server) calls it under its lock.
package lifecycle
