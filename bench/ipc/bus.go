package main

import "context"

// bus is a message bus under test: berth's hub or NATS.
type bus interface {
	name() string
	// open connects the scenario's peers, each on its own connection,
	// and returns once every receiver is subscribed (berth: has its
	// welcome; NATS: its subscription flushed). recv is called with each
	// frame a peer receives, on one goroutine per peer; b is only valid
	// during the call.
	open(ctx context.Context, sc *scenario, recv func(peer int, b []byte)) (conns, error)
}

// conns are one scenario's connections.
type conns interface {
	// send sends msg from peer to its destinations. Calls for one peer
	// are not concurrent; msg may be reused once send returns.
	send(peer int, msg []byte) error
	// close ends every connection and returns once recv is no longer
	// called. It is idempotent.
	close()
}
