package spawn

import "errors"

// Errors returned by Adopt, and the Exit.Err of an adopted child.
var (
	// ErrGone means the process to adopt has exited: no process has its pid,
	// or only its zombie is left.
	ErrGone = errors.New("process is gone")
	// ErrPIDReused means a process runs under the pid but started at another
	// time: the pid was reused by an unrelated process, which Adopt leaves
	// alone. Adopt also returns it when no start time was recorded, since a
	// pid alone cannot tell the child from a stranger.
	ErrPIDReused = errors.New("pid belongs to another process (start time differs)")
	// ErrExitUnknown is the Exit.Err of an adopted child once it has exited:
	// only a process's parent can learn its exit status, and an adopted
	// child's parent is not this program.
	ErrExitUnknown = errors.New("exit status unknown (adopted process)")
)
