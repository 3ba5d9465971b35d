package sandbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"berth/spawn"
)

// Name is the driver's name, as `need add --driver` takes it.
const Name = "bwrap"

// Driver is a [spawn.Driver] that starts every child sandboxed with
// Options followed by the spec's own driver options (spawn.Spec.DriverOpts,
// the need's --driver-opt, parsed with [ParseOptions]): it rewrites the
// spec with Sandbox.Wrap and starts the result with spawn.Exec, so the
// child is tracked, signalled, stopped and adopted exactly as an exec
// child is (its pid is bwrap's, outside the sandbox).
type Driver struct {
	Sandbox *Sandbox // nil means the zero Sandbox (bwrap and env from PATH)
	Options Options
}

// Name returns "bwrap".
func (Driver) Name() string { return Name }

// Start wraps spec (see Sandbox.Wrap) and starts it with spawn.Exec.
// Errors are *spawn.StartError naming spec's own command; a bad driver
// option is an *OptionError inside it.
func (d Driver) Start(ctx context.Context, spec spawn.Spec) (spawn.Process, error) {
	s := d.Sandbox
	if s == nil {
		s = new(Sandbox)
	}
	cmd := ""
	if len(spec.Command) > 0 {
		cmd = spec.Command[0]
	}
	opts := d.Options
	if len(spec.DriverOpts) > 0 {
		var err error
		if opts, err = ParseOptions(append(d.Options.Strings(), spec.DriverOpts...)); err != nil {
			return nil, &spawn.StartError{Instance: spec.Instance, Command: cmd, Err: err}
		}
	}
	wrapped, err := s.Wrap(spec, opts)
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

// Checker is a driver's fingerprint check: [Sandbox.Available], with its
// answer kept for TTL, since a driver's fingerprint is also its health
// ping (every second) and a trial sandbox is a process start. An answer
// found after ctx ended is returned but not kept. A Checker is safe for
// concurrent use.
type Checker struct {
	Sandbox *Sandbox      // nil means the zero Sandbox
	TTL     time.Duration // how long an answer is kept; 0 means not at all

	mu     sync.Mutex // Protects following.
	at     time.Time  // when ok and reason were found; zero: never
	ok     bool
	reason string
}

// Check returns nil if sandboxes can run here, or an error whose message
// is the reason they cannot (ProcessDriver.Check's contract).
func (c *Checker) Check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= c.TTL {
		s := c.Sandbox
		if s == nil {
			s = new(Sandbox)
		}
		tctx, cancel := context.WithTimeout(ctx, trialTimeout)
		c.ok, c.reason = s.Available(tctx)
		cancel()
		c.at = time.Now()
		if ctx.Err() != nil {
			c.at = time.Time{} // the caller gave up: not an answer to keep
		}
	}
	if !c.ok {
		return errors.New(c.reason)
	}
	return nil
}
