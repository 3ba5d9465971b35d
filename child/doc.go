// Package child is the SDK for programs that a berth master spawns. Using it
// is optional: a child that ignores it still runs, it just cannot say when it
// is ready or receive a polite stop request.
//
// # Basics
//
// A child reads its environment with [FromEnv], listens where [Env.Addr]
// says, then opens its pipe, says ready and waits for a stop:
//
//	env, err := child.FromEnv()
//	...
//	ln, err := net.Listen("tcp", env.Addr(needs.HTTP))
//	...
//	conn, err := child.Open(ctx)
//	if errors.Is(err, child.ErrNoPipe) {
//		// not under berth: run without the pipe
//	}
//	conn.Ready()
//	conn.StartHeartbeat(ctx, 10*time.Second, nil)
//	stop := <-conn.Stop() // exit within stop.GraceMS
//	conn.Close()
//
// On the pipe, a Unix socket the master listens on, the child speaks the
// frames of package pipes. It sends child.hello ([pipes.ChildHello], its pid)
// first, child.ready once [Conn.Ready] is called, and stats
// ([pipes.Stats]) on each heartbeat. The master sends child.stop
// ([pipes.ChildStop]), which [Conn.Stop] delivers, and ping, which the Conn
// answers with a pong of the same id. A message type the Conn does not know
// is answered with an "unsupported" error.
//
// # Environment
//
// Reading BERTH_* variables is this package's job: it runs inside the child,
// whose only configuration from berth is its environment. (berth's own
// packages never read the environment; see the style guide.) The master sets
//
//	BERTH_NEED        the need's name, e.g. web
//	BERTH_INSTANCE    the instance's name, e.g. web.2
//	BERTH_ALLOC       the id of this placement of the instance
//	BERTH_HOST        the host to listen on
//	BERTH_PIPE        path of the master's Unix socket for this child
//	BERTH_PORT_TCP    the port leased for each protocol the need declared
//	BERTH_PORT_HTTP
//	BERTH_PORT_WS
//	PORT              the child's main port
//
// Outside berth none is set: FromEnv returns a zero [Env] and [Open] returns
// [ErrNoPipe].
//
// # Reconnection
//
// When the pipe drops, typically because the master restarted, the Conn
// redials the same path by itself: after 100 ms, doubling after each failure
// up to 5 s, each wait jittered by ±20%. It retries until [Conn.Close]. On
// the new connection it says child.hello again and, if Ready was called
// before, child.ready. Meanwhile Ready and SendStats return an error wrapping
// [ErrDisconnected], which callers may ignore, and heartbeats are skipped.
// A frame the Conn cannot decode also makes it start a new connection, after
// answering with an error.
//
// # Caveats
//
// Every goroutine of a Conn (the reader, reconnects included, and each
// heartbeat) belongs to it and ends in Close, which waits for them. The ctx
// given to Dial or Open bounds the dial only; the ctx given to StartHeartbeat
// stops that heartbeat only.
//
// [Conn.Stop] delivers the first stop request and nothing after it; its
// channel is never closed, so select on it together with your own shutdown
// signal. The pipe does not replace signals: the master still sends SIGTERM
// to the child's process group and SIGKILL after the grace period, so a child
// must handle SIGTERM whether it uses this package or not.
//
// CPU use and resident size come from /proc/self and are reported on Linux
// only; elsewhere they are 0.
package child
