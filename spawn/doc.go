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
// # Process groups and stopping
//
// Every child is the leader of its own process group (Setpgid), and its pid
// is the group id. Signals go to the whole group. [Child.Stop] sends SIGTERM,
// waits up to a grace period for the leader to exit, then sends SIGKILL.
//
// Whenever the leader exits, by itself or because it was stopped, the driver
// sends SIGKILL to what is left of the group before closing Done, as
// systemd's KillMode=control-group does: grandchildren that ignored SIGTERM
// or were left running in the background do not outlive the child. A process
// that leaves the group (setsid, setpgid) escapes this.
//
// The Exec driver owns one goroutine per child, which waits for the leader,
// sweeps the group and closes Done. It ends when the leader exits.
//
// # Adoption
//
// A master that restarts finds its children still running (they lead their
// own process groups and write to files, so nothing ties them to it).
// [Adopt] takes one over from its pid and the start time saved from
// [Child.StartTime]:
//
//	c, err := spawn.Adopt(rec.PID, rec.StartTime)
//	switch {
//	case errors.Is(err, spawn.ErrGone):      // exited meanwhile
//	case errors.Is(err, spawn.ErrPIDReused): // a stranger has the pid: leave it alone
//	}
//
// The adopted Child is watched through a pidfd (pidfd_open, polled by the
// runtime's poller), since only a parent can wait for a process. Its exit
// status is therefore unknown: Exit returns Exit{Code: -1, Err:
// [ErrExitUnknown]}. Stop behaves as for a started child: SIGTERM to the
// group, the grace, SIGKILL, and the group swept once the leader is gone.
// Before any signal the leader's start time is read again, so a process
// that reused the pid is never signalled. [Child.Release] ends the watch
// without signalling, for a master that leaves its children to its
// successor.
//
// # Caveats
//
// Pids are reused. A pid read back from storage, after a master restart say,
// may name an unrelated process: compare [ProcStartTime] with the start time
// saved from [Child.StartTime] before signalling it.
//
// Children do not die with the master. Pdeathsig fires when the thread that
// forked the child exits, not the process, and Go moves goroutines between
// threads, so berth does not use it. Output goes to files rather than pipes
// held by the master, so a child survives a master crash or restart and can
// be re-attached.
//
// Signalling a group just after its last member exited could, in theory,
// reach a new group whose leader was given the same pid; the window is the
// time between the last exit and the signal, and new groups are rare.
//
// A child that changes all its user ids cannot be signalled by an
// unprivileged master; Stop then waits for it to exit by itself.
package spawn
