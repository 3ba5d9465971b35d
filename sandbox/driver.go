package sandbox

import (
	"context"
	"errors"

	"berth/spawn"
)

// Name is the driver's name, as `need add --driver` takes it.
const Name = "bwrap"

// Driver is a [spawn.Driver] that starts every child sandboxed with
// Options: it rewrites the spec with Sandbox.Wrap and starts the result
// with spawn.Exec, so the child is tracked, signalled, stopped and adopted
// exactly as an exec child is (its pid is bwrap's, outside the sandbox).
type Driver struct {
	Sandbox *Sandbox // nil means the zero Sandbox (bwrap and env from PATH)
	Options Options
}

// Name returns "bwrap".
func (Driver) Name() string { return Name }

// Start wraps spec (see Sandbox.Wrap) and starts it with spawn.Exec.
// Errors are *spawn.StartError naming spec's own command.
func (d Driver) Start(ctx context.Context, spec spawn.Spec) (spawn.Process, error) {
	s := d.Sandbox
	if s == nil {
		s = new(Sandbox)
	}
	cmd := ""
	if len(spec.Command) > 0 {
		cmd = spec.Command[0]
	}
	wrapped, err := s.Wrap(spec, d.Options)
	if err != nil {
		if se, ok := errors.AsType[*spawn.StartError](err); ok {
			return nil, se
		}
		return nil, &spawn.StartError{Instance: spec.Instance, Command: cmd, Err: err}
	}
	p, err := spawn.Exec.Start(ctx, wrapped)
	if se, ok := errors.AsType[*spawn.StartError](err); ok {
		se.Command = cmd // bwrap's wrapper is an implementation detail
	}
	return p, err
}
