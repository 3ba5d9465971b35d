package driverplugin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/driverplugin/driverpb"
	"berth/spawn"
)

// task is one task of a Plugin, as a spawn.Process. Its watcher goroutine
// (owned by the Plugin) re-attaches it to each new driver process and
// waits for its exit.
type task struct {
	p    *Plugin
	id   string
	done chan struct{}

	recoverMu sync.Mutex // serialises recovery of the task on a new driver process

	// Guarded by p.mu.
	h     Handle
	gen   uint64 // the connection the driver knows the task on; 0: none yet
	exit  spawn.Exit
	ended bool
	// pending is a signal that could not be sent while the driver was
	// down; the watcher sends it once the task is re-attached (SIGKILL
	// wins over any other).
	pending syscall.Signal
}

func (t *task) PID() int {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return t.h.PID
}

func (t *task) StartTime() uint64 {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return t.h.StartTime
}

func (t *task) Tracking() string {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return t.h.Tracking
}

func (t *task) Done() <-chan struct{} { return t.done }

func (t *task) Exit() spawn.Exit {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	if !t.ended {
		return spawn.Exit{Code: -1, Err: spawn.ErrNotExited}
	}
	return t.exit
}

// finish records the exit, forgets the task and closes Done, once.
func (t *task) finish(ex spawn.Exit) {
	t.p.mu.Lock()
	if t.ended {
		t.p.mu.Unlock()
		return
	}
	t.ended, t.exit = true, ex
	delete(t.p.tasks, t.id)
	t.p.mu.Unlock()
	close(t.done)
}

// callTimeout bounds the short calls (Signal, Recover, Stats).
func (p *Plugin) callTimeout() time.Duration { return p.cfg.PingTimeout }

// Signal sends sig to the task through the driver. While the driver
// process is being restarted it waits for it, up to twice PingTimeout.
func (t *task) Signal(sig syscall.Signal) error {
	select {
	case <-t.done:
		return os.ErrProcessDone
	default:
	}
	p := t.p
	ctx, cancel := context.WithTimeout(p.ctx, 2*p.callTimeout())
	defer cancel()
	err := t.signal(ctx, sig)
	if errors.Is(err, ErrDriverDown) {
		p.mu.Lock()
		if t.pending != syscall.SIGKILL {
			t.pending = sig
		}
		p.mu.Unlock()
		p.poke()
		if sig == syscall.SIGKILL {
			return t.killDirectly(err)
		}
	}
	return err
}

// killDirectly kills the task without its driver, which is down: SIGKILL
// can wait for nobody, and a stop must end. The task's process is
// adopted from its handle (pid and start time: a reused pid is left
// alone) and its process group killed while the leader provably holds it,
// as spawn.Adopt does; the task is finished, with an unknown exit, once
// the leader is gone. Processes of the task outside its group are left to
// the driver, which is sent the SIGKILL again once it is back.
func (t *task) killDirectly(cause error) error {
	p := t.p
	p.mu.Lock()
	h := t.h
	p.mu.Unlock()
	c, err := spawn.Adopt(h.PID, h.StartTime, spawn.Tracking{})
	if errors.Is(err, spawn.ErrGone) || errors.Is(err, spawn.ErrPIDReused) {
		t.finish(spawn.Exit{Code: -1, Err: spawn.ErrExitUnknown})
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w; kill task %s without its driver: %w", cause, t.id, err)
	}
	p.log.Warn("driver down: killing its task directly", "task", t.id, "pid", h.PID)
	if err := c.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.Release()
		return fmt.Errorf("%w; kill task %s without its driver: %w", cause, t.id, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Release()
		return nil
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		select {
		case <-c.Done():
			t.finish(spawn.Exit{Code: -1, Signal: "SIGKILL", Err: spawn.ErrExitUnknown})
		case <-t.done:
			c.Release()
		case <-p.ctx.Done():
			c.Release()
		}
	}()
	return nil
}

// signal sends sig on the live connection.
func (t *task) signal(ctx context.Context, sig syscall.Signal) error {
	p := t.p
	c, err := p.waitConn(ctx, 0)
	if err != nil {
		return err
	}
	if err := t.recover(ctx, c); err != nil {
		return err
	}
	r, err := c.rpc.Signal(ctx, &driverpb.SignalRequest{TaskId: t.id, Signal: int32(sig)})
	if err != nil {
		return errorOf(p.cfg.Name, err)
	}
	if r.Exited {
		return os.ErrProcessDone
	}
	return nil
}

// recover makes sure the driver process of c knows the task: a task
// started or recovered on an earlier process is recovered on this one.
// A task the driver says is gone is finished with an unknown exit.
func (t *task) recover(ctx context.Context, c *conn) error {
	t.recoverMu.Lock()
	defer t.recoverMu.Unlock()
	p := t.p
	p.mu.Lock()
	known, h, ended := t.gen == c.gen, t.h, t.ended
	p.mu.Unlock()
	if ended {
		return os.ErrProcessDone
	}
	if known {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.callTimeout())
	defer cancel()
	r, err := c.rpc.Recover(ctx, &driverpb.RecoverRequest{Handle: handleToPB(h)})
	if err != nil {
		return errorOf(p.cfg.Name, err)
	}
	if r.Gone {
		p.log.Info("task exited while its driver was down", "task", t.id, "pid", h.PID)
		t.finish(spawn.Exit{Code: -1, Err: spawn.ErrExitUnknown})
		return os.ErrProcessDone
	}
	p.mu.Lock()
	t.gen = c.gen
	if r.Tracking != "" {
		t.h.Tracking = r.Tracking
	}
	p.mu.Unlock()
	p.log.Info("re-attached task", "task", t.id, "pid", h.PID)
	return nil
}

// watch waits for the task's exit across restarts of the driver process.
func (p *Plugin) watch(t *task) {
	var lastGen uint64
	for {
		c, err := p.waitConn(p.ctx, 0)
		if err != nil {
			return // closed or detached: the task runs on
		}
		if c.gen == lastGen {
			// The last Wait on this connection failed: give the
			// supervisor a moment to decide whether it is down.
			p.poke()
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(p.cfg.PingInterval):
			}
		}
		lastGen = c.gen
		if err := t.recover(p.ctx, c); err != nil {
			switch {
			case errors.Is(err, os.ErrProcessDone):
				return
			case errors.Is(err, ErrDriverDown), p.ctx.Err() != nil:
				continue
			}
			p.log.Error("cannot re-attach task; reporting it lost", "task", t.id, "err", err)
			t.finish(spawn.Exit{Code: -1, Err: fmt.Errorf("%w: %w", ErrTaskLost, err)})
			return
		}
		p.mu.Lock()
		sig := t.pending
		p.mu.Unlock()
		if sig != 0 {
			// A stop asked for while the driver was down.
			ctx, cancel := context.WithTimeout(p.ctx, p.callTimeout())
			err := t.signal(ctx, sig)
			cancel()
			if err == nil || errors.Is(err, os.ErrProcessDone) {
				p.log.Info("sent a signal held while the driver was down", "task", t.id, "signal", sig.String())
				p.mu.Lock()
				if t.pending == sig {
					t.pending = 0
				}
				p.mu.Unlock()
			}
		}
		r, err := c.rpc.Wait(p.ctx, &driverpb.TaskRef{TaskId: t.id})
		if err == nil {
			t.finish(exitFromPB(r))
			return
		}
		if p.ctx.Err() != nil {
			return
		}
		err = errorOf(p.cfg.Name, err)
		if !errors.Is(err, ErrDriverDown) {
			p.log.Error("driver lost a task", "task", t.id, "err", err)
			t.finish(spawn.Exit{Code: -1, Err: fmt.Errorf("%w: %w", ErrTaskLost, err)})
			return
		}
	}
}

// Start starts spec as a task of the driver (spawn.Driver). spec.Task
// names it (the master gives the allocation id); ExtraFiles and ListenPID
// are refused: sockets do not cross to an external driver. If the driver
// process is down, Start waits for it up to twice PingTimeout (within ctx)
// and then fails, saying why it is down.
func (p *Plugin) Start(ctx context.Context, spec spawn.Spec) (spawn.Process, error) {
	switch {
	case spec.Task == "":
		return nil, fmt.Errorf("%w: spec has no Task id", ErrBadRequest)
	case len(spec.ExtraFiles) > 0 || spec.ListenPID:
		return nil, fmt.Errorf("driver %s: socket activation is not supported by external drivers", p.cfg.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*p.callTimeout())
	c, err := p.waitConn(wctx, 0)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("driver %s: %w: %s", p.cfg.Name, ErrUnavailable, p.Fingerprint().Reason)
	}
	if fp := p.Fingerprint(); !fp.Available {
		return nil, fmt.Errorf("driver %s: %w: %s", p.cfg.Name, ErrUnavailable, fp.Reason)
	}
	req := &driverpb.StartRequest{TaskId: spec.Task, Instance: spec.Instance, Argv: spec.Command, Env: spec.Env,
		Dir: spec.Dir, LogPath: spec.LogPath, Cgroup: spec.Tracking.Cgroup, Marks: spec.Tracking.Marks, Options: spec.DriverOpts}
	if l := spec.Limits; !l.IsZero() {
		req.Limits = &driverpb.Limits{MemoryBytes: int64(l.Memory), CpuMillis: int64(math.Round(l.CPUs * 1000)), Pids: int64(l.PIDs)}
	}
	r, err := c.rpc.Start(ctx, req)
	if err != nil {
		err = errorOf(p.cfg.Name, err)
		if errors.Is(err, ErrDriverDown) {
			p.poke()
			return nil, err
		}
		// The driver's own spawn.StartError already says "start
		// <instance>:"; said once, by the StartError made here.
		if re, ok := errors.AsType[*remoteError](err); ok {
			re.msg = strings.TrimPrefix(re.msg, "start "+spec.Instance+": ")
			return nil, &spawn.StartError{Instance: spec.Instance, Err: re}
		}
		return nil, err
	}
	h := handleFromPB(r.Handle)
	h.StartTime, h.Tracking = r.StartTime, r.Tracking
	return p.add(h, c.gen)
}

// Recover re-attaches to a task a previous run of the master started,
// from its persisted handle. It returns at once; the task is recovered on
// the driver process by its watcher, and Done closes with an unknown exit
// if the driver says it is gone.
func (p *Plugin) Recover(h Handle) (spawn.Process, error) {
	if h.ID == "" {
		return nil, fmt.Errorf("%w: handle has no task id", ErrBadRequest)
	}
	return p.add(h, 0)
}

func (p *Plugin) add(h Handle, gen uint64) (spawn.Process, error) {
	t := &task{p: p, id: h.ID, h: h, gen: gen, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := p.tasks[h.ID]; dup {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: task %q already exists", ErrBadRequest, h.ID)
	}
	p.tasks[h.ID] = t
	p.wg.Add(1)
	p.mu.Unlock()
	go func() { defer p.wg.Done(); p.watch(t) }()
	return t, nil
}

// Stats asks the driver for a task's usage.
func (p *Plugin) Stats(ctx context.Context, id string) (Stats, error) {
	c, err := p.waitConn(ctx, 0)
	if err != nil {
		return Stats{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.callTimeout())
	defer cancel()
	r, err := c.rpc.Stats(ctx, &driverpb.TaskRef{TaskId: id})
	if err != nil {
		return Stats{}, errorOf(p.cfg.Name, err)
	}
	return Stats{CPU: time.Duration(r.CpuSeconds * float64(time.Second)), RSS: r.RssBytes}, nil
}

var _ spawn.Driver = (*Plugin)(nil)
