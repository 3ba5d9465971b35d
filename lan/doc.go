// Package lan is the lanmanager: it holds the needs and their instances,
// places instances on masters, approves them by dialling their ports, and
// serves the HTTP API and the event stream.
//
// # Basics
//
// [Open] loads the store (lan.db in the data directory), listens and starts
// the placer. Needs come in through the API ([Server.Handler]) or the
// methods [Server.AddNeed], [Server.ScaleNeed], [Server.RemoveNeed] and
// [Server.RestartNeed], drains through [Server.Drain] and [Server.Undrain];
// every such change is committed to bbolt (fsync'd) before the call
// returns, so an acknowledged change survives a kill -9.
//
// # Placement
//
// The life of every instance is the state machine of package lifecycle:
// the lanmanager feeds it events (reports, grants, check results, ticks,
// API changes) under Server.mu and applies its effects; the records they
// change are written in batches by one committer goroutine, and the frames
// that depend on them leave only once they are written (lan/commit.go).
// Reads of needs and services answer from a view of what is written
// (lan/view.go).
//
// The placer offers each pending instance to up to 8 of the connected
// masters that match the need's pin and are not draining (the least loaded
// of a random sample), waits up to BidWindow for their bids (up to eight
// windows while none has come and an asked master is connected), and grants
// the instance, under a fresh allocation id, to the best bidder: after a failure, the need's restart policy first (while the
// instance's consecutive failures are within LocalAttempts it goes back to
// the master where it failed; after that, that master is avoided), then the
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
// instance backs off as its need's [needs.RestartPolicy] says (default
// 100 ms doubling to 30 s; the failure count starts over after ResetAfter,
// default 30 s, of good running). An exit does the same. `need restart`
// ([Server.RestartNeed]) makes backed-off instances pending at once, with
// their failure count reset.
//
// # Liveness
//
// Every frame a master sends counts as a sign of life. Masters are told
// (welcome: heartbeat_ms = MasterTTL/5, at least 50 ms, and ttl_ms) to ping
// that often, and the lanmanager pings a master that has been quiet for a
// heartbeat, so a master that merely answers pings stays alive too. A
// connected master not heard from for MasterTTL (default 5 s) is lost: its
// link is closed and its instances are placed elsewhere at once. A master
// whose link dropped is lost MasterTTL after it was last heard, not after
// the drop; if it comes back before that, nothing is placed again. After a
// restart of the lanmanager, the masters that held instances have MasterTTL
// from start-up to come back. Liveness times come from Config.Clock and keep
// the monotonic reading of time.Now, so a step of the wall clock neither
// fires a TTL early nor delays it. (Back-off and start deadlines are
// persisted wall-clock times, and do follow the wall clock.)
//
// # Fencing and reconciliation
//
// The allocation id is the fencing token: every placement gets a new one,
// and a report (started, ready, exited, an approval that finishes, a hello's
// allocations or exits) that names an allocation other than the instance's
// current placement (or its handoff) on that very master never changes the
// instance; a stale started is answered with a stop. When a master
// connects, its hello lists what it runs and [Server] reconciles: exits it
// could not send are applied first, then current allocations are kept
// (approved again, never restarted), unknown or replaced ones are stopped,
// and placements it no longer has become pending. Each instance has at most
// one current allocation, so once the returning masters have stopped their
// stale children a need never runs more instances than it asks for.
//
// # Drain
//
// A draining master (by name, persisted in lan.db) gets no offers. For each
// of its running instances the placer runs a replacement round among the
// other masters; the winner is granted a second placement of the same
// instance (its [needs.Handoff], under a new allocation id), which is
// started, port-checked and approved like any placement. Only then does it
// become the instance's placement and the old allocation is told to stop,
// so the instance never stops running. Until the old master confirms the
// stop, that allocation still counts in its Instances. If no other master
// can take an instance, it keeps running and its reason says why. If the
// old child dies or its master is lost meanwhile, the instance moves to its
// replacement at once; if the replacement fails, it is dropped and tried
// again later. Undrain cancels replacements that have not taken over.
//
// Lock order: Server.writeMu, Server.mu, Server.bmu, then hub.mu (see
// LOCKS.md). A session's last-seen time is an atomic value, written by its
// reader without any lock.
package lan
