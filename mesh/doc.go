// Package mesh proxies TCP connections to a set of backends: the building
// block of a need's ingress and upstream listeners (issue 10). It knows
// nothing of the lanmanager or the master; its owner tells it the running
// set (Proxy.Update) and their heartbeat figures (Proxy.SetStats).
//
// # Strategies
//
// A Strategy picks one of the candidates (the running backends not
// ejected) for each new connection; ParseBalance reads their names:
//
//   - round-robin: a counter modulo the number of candidates; exact
//     rotation while the set is stable.
//   - least-conn: the power of two choices: of two distinct candidates
//     drawn at random, the one with fewer live connections through this
//     proxy.
//   - resource: the lowest score connections×10 + cpu%×2 + heapRatio×100
//     (Weights, ParseWeights); stats older than three heartbeats are
//     unknown and a candidate with unknown stats is scored by its
//     connections alone. Ties rotate.
//   - hash: consistent hashing of the client's IP address on a ring of
//     DefaultVirtualNodes points per backend.
//
// # Passive health
//
// A backend whose dial fails is ejected for 1 s, doubling with each
// failure after an ejection ends, up to 30 s; a dial that works resets it.
// The client's connection is offered to one other backend, so it does not
// see the failure. When every backend is ejected they are all offered
// anyway.
//
// # Connections
//
// On Linux event loops copy the bytes (pump_linux.go), one per P: each a
// goroutine over an edge-triggered epoll set, parked in Go's poller while
// the set is empty. A listener's loop accepts and hands each connection to
// the loop holding the fewest, which dials without blocking and reads and
// writes the non-blocking sockets through one 64 KiB buffer, keeping a
// pending buffer only for a destination that does not take all it was
// given (and reading no more from that source until it does). A listener
// that is not TCP, or a backend whose address is a host name, goes through
// the net package and is handed to a loop once connected. Elsewhere, and
// where the loops cannot start, each connection is copied
// both ways by two goroutines through pooled buffers. Either way the end
// of one direction is passed on as a half-close, and an error in either
// closes both. A backend that Update removes gets no new connection at
// once; its open ones may go on for Config.Grace and are then closed.
//
// # Caveats
//
// Connection counts are this proxy's only: two masters balancing the same
// need each count their own. Close closes every connection at once, with
// no grace.
package mesh
