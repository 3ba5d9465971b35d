package spawn

import (
	"context"
	"strconv"
	"syscall"
)

// A Driver starts processes. Exec is built in; drivers that run behind
// go-plugin implement the same interface.
type Driver interface {
	// Name is a short lower-case name for logs, e.g. "exec".
	Name() string
	// Start starts spec and returns once the process is running. ctx bounds
	// the start-up only: the process outlives it. Errors are *StartError.
	Start(ctx context.Context, spec Spec) (Process, error)
}

// A Process is one started child, the leader of its own process group.
//
// A driver must, when the leader exits, SIGKILL whatever is left of the
// child (its cgroup, or its process group and marked processes; see
// Spec.Tracking) and close Done only once it is gone, so that nothing of a
// child keeps running once Done is closed. A driver may also have a
// Tracking() string method, which Child.Tracking reports.
//
// All methods are safe for concurrent use.
type Process interface {
	// PID is the process id of the leader, which is also the process group id.
	PID() int
	// Done is closed once the leader has exited and been reaped and the rest
	// of the child has been sent SIGKILL and is gone.
	Done() <-chan struct{}
	// Exit describes how the leader exited. Before Done is closed it returns
	// an Exit whose Err is ErrNotExited.
	Exit() Exit
	// Signal sends sig to every process of the child. After Done is closed
	// it returns os.ErrProcessDone.
	Signal(sig syscall.Signal) error
}

// Exit is how a process ended.
type Exit struct {
	Code   int    // exit code, -1 if the process was killed by a signal
	Signal string // signal name such as "SIGKILL"; "" if the process exited
	Err    error  // error from waiting other than a non-zero exit, if any
	// OOMKilled is true when the kernel's OOM killer killed a process of
	// the child because of its memory limit (Spec.Limits.Memory).
	OOMKilled bool
}

func (e Exit) String() string {
	s := e.string()
	if e.OOMKilled {
		s += " (oom-killed)"
	}
	return s
}

func (e Exit) string() string {
	switch {
	case e.Err != nil:
		return "wait: " + e.Err.Error()
	case e.Signal != "":
		return "signal " + e.Signal
	default:
		return "exit code " + strconv.Itoa(e.Code)
	}
}
