// Package sandbox runs a berth child under bubblewrap (Debian's bubblewrap
// package, the bwrap program): the core of the bwrap spawn driver.
//
// # Basics
//
// [ParseOptions] reads a need's driver options (bind=, ro-bind=, tmpfs=;
// syntax only, so the driver can check them before a master bids),
// [Available] is the driver's fingerprint (can this machine run
// sandboxes, and if not, why; [Checker] keeps its answer a while), and
// [Sandbox.Wrap] rewrites a [spawn.Spec] into one that runs the same
// command in a sandbox, for spawn.Exec to start. [Driver] does both in one
// [spawn.Driver], with the spec's DriverOpts; cmd/berth-driver-bwrap
// serves it as the bwrap driver plugin:
//
//	opts, err := sandbox.ParseOptions([]string{"bind=/srv/data"})
//	...
//	if ok, why := sandbox.Available(); !ok { /* do not bid: why */ }
//	c, err := spawn.Start(ctx, sandbox.Driver{Options: opts}, spec)
//
// # Isolation
//
// The child sees the host's root read-only (every mount below it too, /sys
// and its cgroups included), a private /tmp (an empty tmpfs), its own /dev
// (null, zero, random, tty, a private /dev/shm, ...) and its own /proc, in
// its own pid namespace: it is pid 2 there (bwrap's init is pid 1) and sees
// no other process. It may write only to its bind= and tmpfs= paths, /tmp
// and /dev/shm. It runs without capabilities (bwrap's --cap-drop ALL): a
// root child could otherwise remount the root read-write, and did in a test
// before the flag was added. Everything else is the host's: the network (so
// its ports and berth's checks work), users and ids, the IPC namespace, the
// hostname, every Unix socket reachable by path.
//
// Paths the child needs and a tmpfs would hide (its working directory,
// its command, the directories of BERTH_PIPE and BERTH_PEERS_FILE, when
// they are under /tmp or a tmpfs= path) are bound read-only.
//
// A master puts each child's BERTH_PIPE alone in a directory of its own
// in its socket directory (<socket dir>/<alloc>/pipe), next to
// master.sock and the other children's pipes. The sandbox hides the
// parent of BERTH_PIPE's directory behind an empty tmpfs (unless that is
// "/", or under /dev or /proc; an option's mount at the same path wins),
// and binds back BERTH_PIPE's directory only: the child reaches its own
// pipe and no other socket of the master, wherever the socket directory
// lies.
//
// # Processes and signals
//
// The spec is rewritten as
//
//	env --ignore-signal=HUP,INT,QUIT,USR1,USR2,ALRM,TERM bwrap --unshare-pid --cap-drop ALL [--new-session] \
//	    [mounts] --chdir DIR -- env --default-signal=HUP,...,TERM -u PWD COMMAND-PATH ARGS...
//
// so the process spawn starts, tracks and adopts (the group leader, whose
// pid the master records) is bwrap outside the sandbox. bwrap does not
// forward signals and would die of SIGTERM first, leaving spawn to SIGKILL
// the command before it could shut down: so bwrap, and its init inside,
// ignore those signals (dispositions set to ignore survive exec), the
// signals reach the command directly (below), and the inner env gives the
// command the default action back. bwrap exits when the command does,
// with its exit code, or 128+N when it was killed by signal N (spawn then
// reports "exit code 143" for a child that died of SIGTERM, not "signal
// SIGTERM"). When bwrap exits, spawn kills what is left of the child: the
// sandbox's init, which waits for every process of the namespace, and with
// it the namespace.
//
// How spawn reaches the command depends on Spec.Tracking. With a cgroup
// or marks (a master always gives BERTH_ALLOC), bwrap gets --new-session:
// its init and the command are in a session and process group of their
// own, with no controlling terminal, so a sandboxed child cannot push
// input into the terminal of a master started from a shell (TIOCSTI); the
// cgroup, or the marks every process of the sandbox carries in its
// environment, find and signal them. With neither, there is no other way
// to find the command than bwrap's process group, so it stays there and
// keeps the master's terminal, if any.
//
// bwrap is not given --die-with-parent: the child must outlive its master
// (a restarted master re-adopts it), and the flag would kill it with the
// process that started it.
//
// # Caveats
//
// The command's argv[0] is the full path of the file found for it, and
// stdin is /dev/null as for every child. Signals the master itself
// ignored are, for the listed signals, back at their default in the
// command. A path that is a symbolic link is bound as the file it leads
// to; a link that itself lies under /tmp or a tmpfs= path is hidden.
package sandbox
