package mesh

import (
	"context"
	"net"
	"time"
)

// Keep-alive of the proxy's sockets.
//
// The client's side probes as Go does by default: after 15 s idle, every
// 15 s, 9 probes. Go sets that with four setsockopt(2) on every accepted
// socket; Listen sets it once on the listening socket instead, which the
// accepted sockets inherit on Linux.
//
// The backend's side turns SO_KEEPALIVE on with the system's timings (one
// setsockopt rather than four): a backend that vanishes leaves the running
// set, and Update closes its connections after their grace.
var (
	clientKeepAlive  = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}
	backendKeepAlive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
)

// Listen opens a TCP listener on addr for Proxy.Serve. It is net.Listen,
// except that on Linux the client keep-alive is set on the listener
// rather than on each connection. Its errors are net.Listen's.
func Listen(addr string) (net.Listener, error) {
	return listenConfig().Listen(context.Background(), "tcp", addr)
}
