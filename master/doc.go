// Package master is the per-machine agent. It links to the lanmanager over
// WebSocket, bids for unsatisfied instances it can serve, leases their
// ports from its [portoffice.Office], spawns each child through [spawn]
// with a control socket (package pipes), reports it, and reports its exit.
//
// # Basics
//
// [LoadConfig] reads masterconfig.json; [LoadOrCreateConfig] writes one
// with the defaults first when it is missing. [Open] prepares the runtime directory, opens the control
// socket, adopts the children a predecessor left running (see Restarts
// below), reclaims port leases nobody holds and starts the link.
// [Agent.Leave] closes the master but leaves its children running for the
// next Open; [Agent.Close] stops every child and releases its ports.
//
// # Restarts: children outlive their master
//
// Children lead their own process groups and write to files, so they do
// not die with the master. `master run` calls Leave on SIGINT/SIGTERM
// (Close with --stop-children); a crash or SIGKILL leaves them the same way.
// Each child's record in master.db holds its pid, /proc start time,
// allocation id, instance, need, ports, socket and log paths, start time
// and whether it said ready. On Open, for every record:
//
//   - a pid that runs with the recorded start time is adopted: watched
//     through a pidfd, its control socket re-opened at the same path (the
//     child package redials by itself and says ready again), its ports kept
//     (they stay leased under its allocation id), and reported in the first
//     hello with Adopted set, so the lanmanager keeps the placement: same
//     pid, no restart. Stopping it works as for a spawned child: SIGTERM to
//     every process of it, the grace, SIGKILL, grandchildren included. Its exit status
//     cannot be known (only a parent can wait for it): its exit is reported
//     as code -1, "exited while adopted (status unknown)";
//   - a process that is gone is reported as an exit in the first hello
//     ("exited while the master was down (status unknown)"), its leases are
//     released and its socket file removed once what is left of it is
//     stopped: its cgroup, or the processes that carry its BERTH_ALLOC and
//     started no earlier than it (never a recorded group id);
//   - a pid that now belongs to another process (another start time) is
//     treated as gone, and that process is never adopted nor signalled.
//     Every signal to an adopted child re-checks the start time first.
//
// Guarantee: a child the master spawned keeps running across a master
// restart, crash or upgrade, and is adopted rather than replaced, as long
// as the runtime directory is kept; a process that merely reuses its pid is
// never touched. The record is written twice: without a pid just before
// the spawn, complete just after. A master that dies between the two
// leaves a pid-less record; the next run finds that child in /proc by its
// BERTH_ALLOC and its group leadership, and adopts it (the lanmanager then
// keeps or stops it like any other), so it never runs unknown beside its
// replacement.
//
// Children are tracked by a cgroup of their own where a cgroup v2
// hierarchy is writable, else by process group plus BERTH_ALLOC (config key
// "tracking"; see track.go and package spawn): a child's ports are released
// only once nothing of it runs. The master's cgroup is named after its
// runtime directory, and every child carries BERTH_MASTER, so the children
// of earlier runs that no record names are found and stopped at start. A
// runtime directory deleted while the master runs is recreated by a check
// every 5 s (runtime.go).
//
// # Drivers
//
// A need's Driver picks how its children are started: exec (spawn.Exec,
// or Options.Driver) or an external driver, a berth-driver-<name> binary
// of the plugins directory (config key "pluginsdirectory"), which Open
// runs through package driverplugin before it adopts children
// (drivers.go). A bid is refused, with the reason, for a driver this
// master lacks or whose fingerprint says unavailable, for socket
// activation with an external driver, and for options given to exec. A
// child record names its driver and task handle; Open re-attaches to the
// driver process the previous run left (its state is in master.db's
// drivers bucket) and recovers such children through it, or watches them
// itself when the driver binary is gone. Leave leaves the driver
// processes running; Close stops the children, then the drivers.
// docs/drivers.md has the whole story.
//
// # Liveness
//
// After the lanmanager's welcome, the master pings it every heartbeat_ms
// (DefaultHeartbeat when absent) and counts any frame as a sign of life;
// after ttl_ms (DefaultLinkTTL when absent, and also before the welcome)
// without one it drops the link and redials with a back-off of 100 ms
// doubling to 2 s plus jitter. Timers use the monotonic clock, so a
// wall-clock jump neither fires nor delays them. While unlinked the
// children keep running; with stopafterdisconnect set they are stopped
// once the master has been unlinked that long (counted from the start, or
// from the last time the link went down), and their exits go in the next
// hello.
//
// # Outbound queue
//
// Every frame for the lanmanager except pings and log data is pushed on the
// link's bounded queue (4,096 frames, outbox.go) and written in order by a
// writer goroutine the link owns; nothing writes to the network, and no
// bbolt commit happens, while Agent.mu is held. A write blocked for the
// link's TTL (a lanmanager that stopped reading) or a full queue drops the
// link. Exits queued but not written when the link goes down are kept and
// carried by the next hello, like exits that happened while unlinked: each
// exit is written on one link or carried by one hello, never both. Records
// in master.db are durable before the frame that reports them is queued.
//
// # Port hygiene
//
// Every repairinterval (default 30s) a sweep reclaims leases whose owner is
// not one of the master's children (a child is registered from its grant,
// before it leases, until its exit is handled), and logs how many. At Open
// the master warns about each configured range that overlaps the kernel's
// ephemeral port range (/proc/sys/net/ipv4/ip_local_port_range), whose
// ports the kernel hands to outgoing connections.
//
// # Runtime directory
//
//	master.id          stable id of this master (the lanmanager knows it by this, never by IP)
//	master.db          bbolt: meta/schema = "1" (raw bytes; another version is refused),
//	                   bucket "children", alloc id → JSON {alloc, instance, need, pid,
//	                   start_time, ports, pipe, log, started_at, ready, cgroup,
//	                   upstreams (name → port), peers_file}
//	ports.db           bbolt: the port office's leases
//	logs/<inst>.log    each child's stdout and stderr
//	sock/master.sock   control socket (`master ps`), mode 0600
//	sock/<alloc>/pipe  each child's control socket (BERTH_PIPE), mode 0600, alone
//	                   in a directory of its own (0700, removed when the child is
//	                   gone) so that a sandbox can bind only it; a child adopted
//	                   from a master before this layout keeps sock/<alloc>.sock
//	peers/<alloc>.json each child's peers file (BERTH_PEERS_FILE), mode 0600, if its need has peers
//
// The sock directory is 0700. When its paths would pass the kernel's
// 108-byte limit it moves to a directory with a random name made under the
// system temp directory, recorded in <runtime>/sockdir (see [SocketDir]).
// Wherever it is, it is checked at start and by `master ps`: a symbolic
// link, a directory of another user or one with another mode than 0700 is
// refused.
//
// # Ingress
//
// Every master asks for the running set in its hello; the lanmanager
// sends it the needs with ingress (a "mesh" frame after the welcome and
// whenever that list changes) and their running instances, which the
// [Mirror] holds. For each need × ingress port the master runs a
// mesh.Proxy on ingressaddress:PORT (ingress.go), fed the need's running
// instances at every change of the mirror, and reports its ports in an
// "ingress" frame. A port that cannot be opened is retried after 1 s,
// doubling up to 30 s. While the link is down the proxies serve the last
// known set; a new link updates them without restarting them
// (docs/mesh.md, "Ingress on the masters").
//
// # Upstreams and peers
//
// For a child whose need has upstreams, the master opens a loopback
// listener per upstream before the spawn (127.0.0.1, a port the kernel
// picks) and passes it as BERTH_UPSTREAM_<NAME>; each is a mesh.Proxy over
// the upstream need's running instances in the [Mirror], which accepts and
// closes connections while there is none. With peers, it writes the peers
// file and signals the child if asked. It sends the child mesh.ready,
// mesh.change, mesh.error and mesh.close on its pipe (upstream.go;
// docs/mesh.md, "Upstreams and peers"). The ports are recorded, and an
// adopted child gets its listeners back on the same ports.
//
// # Resource limits
//
// At Open the master finds where it can enforce a need's limits
// (spawn.FindLimitCgroups: the controllers it can enable under its v2
// cgroup, else the v1 hierarchies, under <mount>/berth/<hash>). It bids
// no for a need with a limit it cannot enforce, saying which and why;
// it gives each limited child its limits and cgroups in the spawn.Spec,
// records the v1 ones in master.db so that a successor adopts the child
// with them, reports an OOM kill in the exited frame (oom_killed,
// memory_limit), and answers ps with each child's use against its limits
// (usage.go). See docs/drivers.md.
//
// # Caveats
//
// While the link is down children keep running; messages that could not be
// sent are recovered by the hello that follows the reconnection, which
// lists every running child and carries the exits not sent. A frame the
// master wrote to a connection that then died before the lanmanager read it
// is lost like any in-flight frame; the hello reconciles what runs.
//
// Lock order: Agent.mu, then child.mu (see LOCKS.md).
package master
