// Package lan is the lanmanager: it holds the needs and their instances,
// places instances on masters, approves them by dialling their ports, and
// serves the HTTP API and the event stream.
//
// # Basics
//
// [Open] loads the store (lan.db in the data directory), listens and starts
// the placer. Needs come in through the API ([Server.Handler]) or the
// methods [Server.AddNeed], [Server.ScaleNeed] and [Server.RemoveNeed];
// every change is committed to bbolt (fsync'd) before the call returns.
//
// # Placement
//
// The placer offers each pending instance to every connected master that
// matches the need's pin, waits up to BidWindow for their bids, and grants
// the instance, under a fresh allocation id, to the bidder that runs the
// fewest instances of the same need, then the fewest instances in all. A
// round without a usable bid records the masters' reasons on the instance
// and is tried again after 2 s, or at once when a master connects or frees
// capacity.
//
// # Approval and failure
//
// When a master reports a child started, the lanmanager dials every
// declared port from its own host until all answer or StartDeadline passes.
// Pass: running. Fail: the master is told to stop the child and the
// instance backs off (100 ms doubling to 30 s, reset after 30 s of good
// running). An exit does the same. Reports that name an allocation other
// than the instance's current one are stale and never change it.
//
// # Caveats
//
// A master that disconnects keeps its instances placed for MasterGrace;
// after that they are placed again. When it comes back, its hello lists
// what it runs and [Server] reconciles: current allocations are kept,
// unknown or replaced ones are stopped, missing ones become pending.
//
// Lock order: Server.mu, then hub.mu (see LOCKS.md).
package lan
