package spawn

import (
	"errors"
	"fmt"
)

// Errors returned by Start and by drivers.
var (
	// ErrEmptyCommand means Spec.Command has no elements.
	ErrEmptyCommand = errors.New("empty command")
)

// Errors returned by Process.Exit and Process.Signal.
var (
	// ErrNotExited is the Exit.Err of a process whose Done channel is not
	// closed yet.
	ErrNotExited = errors.New("process has not exited")
)

// StartError reports a child that could not be started: the binary was not
// found or not executable, the working directory or log file was unusable,
// or the start-up context ended first.
type StartError struct {
	Instance string // Spec.Instance
	Command  string // Spec.Command[0] as given, before any PATH lookup; "" if empty
	Err      error  // the cause, e.g. exec.ErrNotFound or a syscall.Errno
}

func (e *StartError) Error() string {
	if e.Command == "" {
		return fmt.Sprintf("start %s: %v", e.Instance, e.Err)
	}
	return fmt.Sprintf("start %s: exec %q: %v", e.Instance, e.Command, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// Errors about cgroups (Tracking.Cgroup).
var (
	// ErrNoCgroup means no usable cgroup v2 hierarchy: none is mounted
	// read-write, or a path is not in one.
	ErrNoCgroup = errors.New("no usable cgroup v2 hierarchy")
	// ErrCgroupInUse means a child's cgroup already holds processes.
	ErrCgroupInUse = errors.New("cgroup already holds processes")
)
