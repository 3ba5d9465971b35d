package spawn

import (
	"context"
	"syscall"
)

// Tracking says how the processes of one child are found, signalled and
// waited for once the child runs: by a cgroup of its own where the machine
// has a writable cgroup v2 hierarchy, else by its process group plus marks
// in the environment that prove a process is the child's.
type Tracking struct {
	// Cgroup is the child's own cgroup v2 directory, e.g.
	// /sys/fs/cgroup/berth/<master>/<alloc>; "" means process-group
	// tracking. Start creates it (its parent must exist), the child is born
	// in it, and so is everything it starts, setsid or not: Signal and
	// Stop reach them all (SIGKILL through cgroup.kill), Done is closed
	// only once it is empty (cgroup.events says "populated 0"), and the
	// directory is then removed.
	Cgroup string
	// Marks are "K=V" entries of the child's environment (a master uses
	// BERTH_ALLOC=<allocation id>). Without Cgroup, a process is the
	// child's when it carries every mark in /proc/<pid>/environ and did not
	// start before the child: such processes are signalled and waited for
	// even after they left the process group (setsid). With no marks, only
	// the process group is tracked, and only while its leader provably
	// holds the group id.
	Marks []string
	// LimitCgroups are the child's own cgroups in the cgroup v1
	// hierarchies that enforce Spec.Limits where the v2 tree lacks the
	// controllers (e.g. /sys/fs/cgroup/memory/.../berth/<master>/<alloc>;
	// see LimitCgroups.Child). Start creates them and puts the child in
	// them before its command runs; they are removed once the child is
	// gone.
	LimitCgroups []string
}

// String is "cgroup <dir>" or "process group".
func (t Tracking) String() string {
	if t.Cgroup != "" {
		return "cgroup " + t.Cgroup
	}
	return "process group"
}

// A tracker finds, signals and waits for the processes of one child. Only
// processes it can prove are the child's are ever signalled.
type tracker interface {
	// signal sends sig to every process of the child; os.ErrProcessDone
	// if there was none.
	signal(sig syscall.Signal) error
	// kill sends SIGKILL to every process of the child.
	kill()
	// waitEmpty returns once no process of the child is left (zombies do
	// not count), or with ctx's error.
	waitEmpty(ctx context.Context) error
	// cleanup removes what the tracker set up (a cgroup directory) once
	// the child is gone.
	cleanup()
	// String describes the tracking for ps: "cgroup <dir>" or
	// "process group <pgid>".
	String() string
}
