// Package sandbox runs a berth child under bubblewrap (Debian's bubblewrap
// package, the bwrap program): the core of the bwrap spawn driver.
//
// # Basics
//
// [ParseOptions] reads a need's driver options (bind=, ro-bind=, tmpfs=;
// syntax only, so the lanmanager can check them), [Available] is the
// driver's fingerprint (can this machine run sandboxes, and if not, why),
// and [Sandbox.Wrap] rewrites a [spawn.Spec] into one that runs the same
// command in a sandbox, for spawn.Exec to start. [Driver] does both in one
// [spawn.Driver]:
//
//	opts, err := sandbox.ParseOptions([]string{"bind=/srv/data"})
//	...
//	if ok, why := sandbox.Available(); !ok { /* do not bid: why */ }
//	c, err := spawn.Start(ctx, sandbox.Driver{Options: opts}, spec)
//
// # Isolation
//
// The child sees the host's root read-only (every mount below it too,
// /sys and its cgroups included), a private /tmp (an empty tmpfs), its own
// /dev (null, zero, random, tty, a private /dev/shm, ...) and its own
// /proc, in its own pid namespace: it is pid 2 there (bwrap's init is pid
// 1) and sees no other process. It may write only to its bind= paths,
// /tmp and /dev/shm. It runs without capabilities (bwrap's --cap-drop
// ALL): a root child could otherwise remount the root read-write, and did
// in a test before the flag was added. Everything else is the host's: the
// network (so its ports and berth's checks work), users and ids, the IPC
// namespace, the hostname, every Unix socket reachable by path.
//
// Paths the child needs and a tmpfs would hide (its working directory,
// its command, the directories of BERTH_PIPE and BERTH_PEERS_FILE, when
// they are under /tmp or a tmpfs= path) are bound read-only.
//
// # Processes and signals
//
// The spec is rewritten as
//
//	env --ignore-signal=HUP,INT,QUIT,USR1,USR2,ALRM,TERM bwrap --unshare-pid --cap-drop ALL \
//	    [mounts] --chdir DIR -- env --default-signal=HUP,...,TERM -u PWD COMMAND-PATH ARGS...
//
// so the process spawn starts, tracks and adopts (the group leader, whose
// pid the master records) is bwrap outside the sandbox, and the command
// is in the same process group and cgroup: signals to the child's group
// or cgroup reach the command. bwrap itself does not forward signals and
// would die of SIGTERM first, leaving spawn to SIGKILL the command before
// it could shut down: so bwrap, and its init inside, ignore those signals
// (dispositions set to ignore survive exec), and the inner env gives the
// command the default action back. bwrap exits when the command does,
// with its exit code, or 128+N when it was killed by signal N (spawn then
// reports "exit code 143" for a child that died of SIGTERM, not "signal
// SIGTERM"). When bwrap exits, spawn kills what is left of the child, and
// the pid namespace dies with its init.
//
// bwrap is not given --die-with-parent: the child must outlive its master
// (a restarted master re-adopts it), and the flag would kill it with the
// process that started it. Nor --new-session: the command stays in the
// process group spawn tracks.
//
// # Caveats
//
// The command's argv[0] is the full path of the file found for it, and
// stdin is /dev/null as for every child. Signals the master itself
// ignored are, for the listed signals, back at their default in the
// command. A child that tries to make the sandbox a session of its own
// (setsid) leaves the process group as any child can; a cgroup or the
// BERTH_ALLOC mark still tracks it. Without --new-session the child keeps
// the master's controlling terminal, if the master has one (started from a
// shell rather than as a service): where the kernel still allows TIOCSTI
// (dev.tty.legacy_tiocsti=1) it could push input into that terminal.
package sandbox
