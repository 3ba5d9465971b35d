package driverplugin

import (
	"context"
	"syscall"
	"time"

	"berth/spawn"
)

// A TaskDriver is what a driver binary implements and hands to Serve. The
// master calls it over gRPC (driverpb); each call gets a ctx that ends when
// the master gives up on it. All methods may be called concurrently.
//
// ProcessDriver implements it on top of a spawn.Driver, which is all most
// drivers need.
type TaskDriver interface {
	// Fingerprint says who the driver is and whether it can run here. It
	// is also the master's health ping: keep it fast.
	Fingerprint(ctx context.Context) Fingerprint
	// Start starts t and returns once its process runs. ctx bounds the
	// start-up only.
	Start(ctx context.Context, t Task) (Handle, error)
	// Wait returns once task id has exited and nothing of it is left.
	// Once Wait has returned the exit, the driver may forget the task.
	Wait(ctx context.Context, id string) (spawn.Exit, error)
	// Stop sends SIGTERM, waits up to grace, then SIGKILL, and returns
	// the exit.
	Stop(ctx context.Context, id string, grace time.Duration) (spawn.Exit, error)
	// Signal signals every process of the task; os.ErrProcessDone once
	// it has exited.
	Signal(ctx context.Context, id string, sig syscall.Signal) error
	// Stats reports the task's usage.
	Stats(ctx context.Context, id string) (Stats, error)
	// Recover re-attaches to a task started by an earlier run of the
	// driver, from the handle Start returned; spawn.ErrGone if it exited
	// meanwhile.
	Recover(ctx context.Context, h Handle) (Handle, error)
}

// An OptionsChecker is a TaskDriver that can check a need's driver options
// (--driver-opt, "KEY=VALUE" each, in order) before the master bids for
// the need: a non-nil error, which should name the option, makes the
// master refuse its bid with that reason. Keep it fast and free of side
// effects; the master keeps its answers. A TaskDriver without it gets its
// options at Start only.
type OptionsChecker interface {
	CheckOptions(ctx context.Context, opts []string) error
}

// Fingerprint is what a driver says about itself.
type Fingerprint struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Available is false when the driver cannot run tasks here; Reason
	// says why.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// What it supports.
	Signals          bool `json:"signals,omitempty"`
	ResourceLimits   bool `json:"resource_limits,omitempty"`
	SocketActivation bool `json:"socket_activation,omitempty"`
}

// Task is one task to start: the exec driver's Spec (Command, Env, Dir,
// LogPath, Tracking, DriverOpts; never ExtraFiles or ListenPID: sockets do
// not cross to external drivers) and the allocation id as its ID.
type Task struct {
	ID     string
	Spec   spawn.Spec
	Limits Limits
}

// Limits are a task's resource limits; zero means none.
type Limits struct {
	MemoryBytes int64
	CPUMillis   int64 // thousandths of a CPU
	Pids        int64
}

// Handle is what the master keeps of a task to recover it later. State is
// the driver's own, opaque to the master; it is persisted in master.db.
type Handle struct {
	ID        string `json:"id"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time,omitempty"`
	Tracking  string `json:"tracking,omitempty"`
	State     []byte `json:"state,omitempty"`
}

// Stats is a task's resource usage.
type Stats struct {
	CPU time.Duration // user plus system, in total
	RSS uint64        // bytes
}
