// Package spawn starts, supervises and stops the children of a berth master.
//
// # Basics
//
// A [Spec] says what to run: the argv, the complete environment, the working
// directory and the file the output goes to. [Start] hands it to a [Driver]
// and returns a [Child]:
//
//	spec.Command = spawn.ExpandArgs(spec.Command, spec.Env)
//	c, err := spawn.Start(ctx, nil, spec) // nil: the built-in Exec driver
//	...
//	<-c.Done()      // the child exited by itself, or
//	c.Stop(ctx, 10*time.Second)
//
// The ctx given to Start bounds the start-up only; the child runs until it
// exits or is stopped. Start errors are [*StartError] values naming the
// instance and the command, and wrap the cause (exec.ErrNotFound,
// [ErrEmptyCommand], a syscall.Errno, ...).
//
// The child contract: the environment is exactly Spec.Env (spawn adds
// nothing, except LISTEN_PID with Spec.ListenPID, below), stdin is
// /dev/null, stdout and stderr are appended to Spec.LogPath,
// Spec.ExtraFiles are fd 3 and up.
//
// With Spec.ListenPID (socket activation) the Exec driver starts the
// command as
//
//	/bin/sh -c 'unset PWD; LISTEN_PID=$$; export LISTEN_PID; exec "$@"' berth-listen PATH ARGS...
//
// The shell sets LISTEN_PID to its own pid and execs the command in place,
// so the pid, the process group, the /proc start time and fds 3 and up are
// the command's. The environment is then Spec.Env plus LISTEN_PID (PWD is
// kept only if Spec.Env sets it, and the `unset PWD; ` is left out then; a
// /bin/sh that is bash also adds SHLVL). The PATH argument is the file
// found for Spec.Command[0] (looked up in the PATH of Spec.Env), so a
// command found that way gets its full path as argv[0]. The file is checked before the fork, so a missing or
// non-executable command is still a [*StartError], not exit code 126 or 127
// from the shell. The master's side: the sockets are fd 3 and up in the
// need's protocol order, with LISTEN_FDS and LISTEN_FDNAMES in Spec.Env
// (see package child).
//
// A Child moves through these states (drawn in more detail on [Child]):
//
//	Starting ──▶ Running ──Stop──▶ Stopping ──▶ Exited
//	                 └────── leader exits ───────▲
//
// # Tracking: cgroups and process groups
//
// Every child is the leader of its own process group (Setpgid), and its pid
// is the group id. [Spec.Tracking] says how the rest of the child (what it
// forks) is found:
//
//   - By a cgroup of its own (Tracking.Cgroup), where the machine has a
//     writable cgroup v2 hierarchy ([CgroupMount], [MakeCgroup]: the unified
//     mount at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid
//     system). Start creates the directory and the child is born in it,
//     with clone3's CLONE_INTO_CGROUP; where the kernel refuses that
//     (before Linux 5.7, or a seccomp filter), the child starts as
//     /bin/sh -c 'read -r berth_go || exit 125; exec </dev/null; exec "$@"'
//     (with the PWD and LISTEN_PID parts above where they apply), its pid
//     is written to cgroup.procs, and only then is the line sent:
//     the command never runs outside the cgroup, and a master that dies in
//     between leaves a shell that exits 125. Everything the child starts
//     stays in the cgroup, setsid or not.
//   - By its process group and its marks (Tracking.Marks, "K=V" entries of
//     its environment; a master uses BERTH_ALLOC=<alloc>). The group id is
//     signalled only while the leader provably holds it: a child this
//     program started until it is reaped (its exit is seen with waitid
//     WNOWAIT, so the zombie keeps the id), an adopted one while /proc
//     shows it with its start time. Processes that left the group (setsid)
//     are found in /proc by their marks and a start time no older than the
//     leader's, pinned with a pidfd before the check, and signalled through
//     it. A group id read back from storage is never signalled by itself:
//     the kernel gives it to any process that calls setsid() once the old
//     group is empty.
//
// [Child.Tracking] says which is in use, for ps.
//
// # Resource limits
//
// [Spec.Limits] (memory, CPUs, pids) are written to the child's cgroups
// before its command runs: its v2 cgroup for the controllers enabled
// there, and its own cgroups in the v1 hierarchies of the others
// (Tracking.LimitCgroups, which Start creates; a child with any starts
// through the gate shell above, its pid written to each cgroup.procs
// before the line is sent). [FindLimitCgroups] finds which a machine has.
// Exit.OOMKilled says the kernel's OOM killer killed a process of the
// child ("oom_kill" in memory.events or memory.oom_control, read before
// the cgroups are removed); [Child.Usage] reads memory, CPU time and
// pids. The v1 cgroups are removed once the child is gone, by Start's
// child, an adopted one, or [Sweep]. See docs/drivers.md.
//
// # Stopping
//
// [Child.Stop] sends SIGTERM to every process of the child, waits up to a
// grace period, then sends SIGKILL (through cgroup.kill for a cgroup).
// Whenever the leader exits, by itself or because it was stopped, the
// driver sends SIGKILL to what is left of the child, as systemd's
// KillMode=control-group does, and closes Done only once nothing of it is
// left: the cgroup is empty (cgroup.events says "populated 0", watched with
// inotify), or no process of the group or with the marks runs. A caller
// that releases the child's ports on Done never races a dying grandchild
// that still holds one. The cgroup directory is then removed.
//
// The Exec driver owns one goroutine per child, which waits for the leader,
// kills and waits for the rest, and closes Done. It ends when the leader
// has exited and nothing of the child is left.
//
// # Adoption
//
// A master that restarts finds its children still running (they lead their
// own process groups and write to files, so nothing ties them to it).
// [Adopt] takes one over from its pid, the start time saved from
// [Child.StartTime] and its Tracking:
//
//	c, err := spawn.Adopt(rec.PID, rec.StartTime, spawn.Tracking{Cgroup: rec.Cgroup})
//	switch {
//	case errors.Is(err, spawn.ErrGone):      // exited meanwhile: spawn.Sweep what is left
//	case errors.Is(err, spawn.ErrPIDReused): // a stranger has the pid: leave it alone
//	}
//
// The adopted Child is watched through a pidfd (pidfd_open, polled by the
// runtime's poller), since only a parent can wait for a process. Its exit
// status is therefore unknown: Exit returns Exit{Code: -1, Err:
// [ErrExitUnknown]}. Stop behaves as for a started child. With a cgroup,
// the pid must be in it to be adopted. [Child.Release] ends the watch
// without signalling, for a master that leaves its children to its
// successor.
//
// [Sweep] stops what is left of a child nobody watches (its leader gone, or
// its record lost): its cgroup, or the processes that carry its marks and
// started no earlier than its leader. [FindLeader] finds the leader of a
// child whose pid was never recorded, and [EnvValues] lists the children a
// mark names.
//
// # Caveats
//
// Pids are reused. A pid read back from storage, after a master restart say,
// may name an unrelated process: compare [ProcStartTime] with the start time
// saved from [Child.StartTime] before signalling it, and never signal a
// group id read back from storage (see Tracking above).

// Children do not die with the master. Pdeathsig fires when the thread that
// forked the child exits, not the process, and Go moves goroutines between
// threads, so berth does not use it. Output goes to files rather than pipes
// held by the master, so a child survives a master crash or restart and can
// be re-attached.
//
// Without a cgroup, signalling an adopted child's group just after its
// leader and every member exited could, in theory, reach a new group whose
// leader was given the same pid; the window is the time between the check
// of the leader's start time and the signal, and pids would have to wrap
// around within it. A child this program started has no such window, and
// neither has a cgroup. A grandchild that leaves the group and clears the
// marks from its environment escapes process-group tracking; a cgroup has
// no such gap.

// A child that changes all its user ids cannot be signalled by an
// unprivileged master without a cgroup; Stop, and Done, then wait for it to
// exit by itself.
package spawn
