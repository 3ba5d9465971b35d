// Package child is the SDK for programs that a berth master spawns. Using it
// is optional: a child that ignores it still runs, it just cannot say when it
// is ready or receive a polite stop request.
//
// # Basics
//
// A child gets its listening socket with [Listen], then opens its pipe,
// says ready and waits for a stop:
//
//	ln, err := child.Listen("http") // inherited, or BERTH_HOST:BERTH_PORT_HTTP
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
// answers with a pong of the same id; and to a child whose need has
// upstreams or peers, the lifecycle messages below. A message type the Conn
// does not know is answered with an "unsupported" error.
//
// # Environment
//
// Reading BERTH_* variables is this package's job: it runs inside the child,
// whose only configuration from berth is its environment. berth's other
// packages never read the environment (see the style guide): the commands
// read it, in their flags' EnvVars and in cmd/internal/cliapp, and hand the
// master the environment its children start from (master.Options.Environ).
// internal/deptest checks it (TestEnvironmentReadAtTheEdges). External
// spawn drivers are other programs: go-plugin starts them with the master's
// environment, as any child process of the master would get it.
// The master sets
//
//	BERTH_NEED        the need's name, e.g. web
//	BERTH_INSTANCE    the instance's name, e.g. web.2
//	BERTH_ALLOC       the id of this placement of the instance
//	BERTH_HOST        the host to listen on
//	BERTH_PIPE        path of the master's Unix socket for this child
//	BERTH_MASTER      names the master that started the child (a hash of its runtime directory)
//	BERTH_PORT_TCP    the port leased for each protocol the need declared
//	BERTH_PORT_HTTP
//	BERTH_PORT_WS
//	PORT              the child's main port
//	BERTH_UPSTREAM_<NAME>  127.0.0.1:PORT, for each upstream of the need
//	BERTH_PEERS_FILE  the peers file, if the need has peers
//
// Outside berth none is set: FromEnv returns a zero [Env] and [Open] returns
// [ErrNoPipe].
//
// # Socket activation
//
// A need declared with socket_activation (`lanmanager need add
// --socket-activation`) has its master bind the ports itself, before the
// child starts, and pass the listening sockets by the systemd convention:
//
//	fd 3, 4, ...      one listening TCP socket per protocol, in the order
//	                  the need lists its protocols
//	LISTEN_FDS        how many, e.g. 2
//	LISTEN_FDNAMES    their protocols, joined by ':', e.g. http:tcp
//	LISTEN_PID        the child's own pid
//
// The BERTH_PORT_* variables and PORT are set as usual, to the same ports.
// Nobody else can take a port between the master's lease and the child's
// bind, and a child that is slow to start is already reachable: connections
// wait in the socket's backlog.
//
// [Listen] returns the inherited socket of a protocol when there is one,
// and otherwise listens on BERTH_HOST and BERTH_PORT_<PROTO> itself, so a
// child that uses it runs the same with or without socket activation.
// [Listeners] returns the inherited sockets by name. Both check that
// LISTEN_PID is this process (a program started by the child does not take
// its parent's sockets), unset the three variables and set close-on-exec on
// the sockets; each socket is handed out once. Under systemd's own socket
// activation they work the same; the names are then the socket units'
// FileDescriptorName= settings.
//
// Berth starts a socket-activated command through /bin/sh, which sets
// LISTEN_PID to its own pid and execs the command in place; the command's
// argv[0] is then the full path of a command found in PATH. A command
// that is itself a shell script keeps the sockets and the variables as
// long as it execs the server (`exec hello`), which keeps the pid; a
// server it forks instead has another pid and does not take them.
//
// # IPC
//
// [DialIPC] connects to the LAN's IPC hub (package ipchub; docs/ipc.md),
// where the processes of a group exchange messages. The master gives a
// child the hub's address and token, and its group:
//
//	BERTH_IPC         the hub, ws://host:port
//	BERTH_IPC_HOST    the same host and port apart, for clients configured
//	BERTH_IPC_PORT    by host and port (AceBase's storage.ipc)
//	BERTH_IPC_TOKEN   the hub's token, empty when it has none
//	BERTH_IPC_GROUP   the group; BERTH_NEED when unset
//
// [IPCFromEnv] reads them into [IPCOptions] (ErrNoIPC when the hub is not
// there); the caller adds callbacks and dials:
//
//	opts, err := child.IPCFromEnv()
//	opts.OnMessage = func(msg []byte) { ... }
//	ipc, err := child.DialIPC(ctx, opts)
//	ipc.Send(ctx, "peer-b", msg)  // or ipc.Broadcast(ctx, msg)
//	ipc.Close()
//
// The client reconnects by itself (back-off from 100 ms to 5 s, ±20%),
// pings a hub silent for 5 s and redials one that does not answer within
// 10 s. Messages over the hub's maxPayload go by HTTP and arrive as any
// other. The callbacks run one at a time, in the hub's order; a callback
// that falls QueueLen events behind loses the newest ones, counted in
// [IPC.Stats]. See [IPC] and docs/ipc.md, "Go client".
//
// # Upstreams, peers and lifecycle events
//
// A need declared with `--upstream db=postgres:tcp` gives its children
// BERTH_UPSTREAM_DB=127.0.0.1:PORT, a listener of the master whose
// connections go to a running instance of postgres ([Env.Upstream]("db")
// reads it; a legacy program takes it as `${BERTH_UPSTREAM_DB}` in its
// command). With `--peers` the child gets BERTH_PEERS_FILE, the need's
// running instances as JSON, replaced atomically when they change
// ([ReadPeers]; [Env.PeersFile]). On the pipe the master sends the event set
// of @kumori/tcp-proxy, which [Conn.Events] delivers in order:
//
//	for ev := range conn.Events() {
//		switch ev.Type {
//		case child.EventReady, child.EventChange: // ev.State: upstreams and their targets, peers
//		case child.EventError:                    // ev.Error: e.g. an upstream whose need has no running instance
//		case child.EventClose:                    // ev.Reason: the master is stopping the child
//		}
//	}
//
// Ready comes after each connection of the pipe (a reconnection included),
// change when the peers or an upstream's targets change, both with the
// whole state, which [Conn.MeshState] also returns. The queue holds 64
// events; a child that falls behind loses the oldest (counted by
// [Conn.DroppedEvents]), never the newest, so the latest state is never
// lost. Like [Conn.Stop], the channel is never closed.
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
// heartbeat) belongs to it and ends in Close, which waits for them; so do
// an IPC client's (its reader, keepalive and callback goroutine). The ctx
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
