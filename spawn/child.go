package spawn

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"
)

// A Child is a started process with stop semantics on top of its driver's
// Process.
//
// Its life runs through these states:
//
//	Starting ──Start returns──▶ Running ──Stop──▶ Stopping ──leader exits──▶ Exited
//	   │                          │                                            ▲
//	   └──start error (no Child)  └──────────────── leader exits ──────────────┘
//
// Starting lasts until Start returns; a failed start yields a *StartError and
// no Child. Exited is reached when Done is closed. By then the leader has
// been reaped, the rest of the child (its cgroup, or its process group and
// the processes that carry its marks; see Spec.Tracking) has been sent
// SIGKILL and is gone, and Exit returns the final result: everything the
// driver did happens before a receive from Done returns.
//
// A Child from Adopt enters at Running. Its leader is not reaped by this
// program, so Done means the leader has exited and nothing of the child is
// left, and Exit's Err is ErrExitUnknown. Release leaves Running without a transition: the process
// runs on, unwatched.
//
// All methods are safe for concurrent use.
type Child struct {
	proc      Process
	startTime uint64

	mu       sync.Mutex // guards the fields below
	stopping bool       // SIGTERM sent by Stop
	killed   bool       // SIGKILL sent by Stop
}

// Start starts spec with driver d (Exec if d is nil). ctx bounds the
// start-up only; the child keeps running after ctx ends, until it exits or
// Stop is called. Errors are *StartError.
func Start(ctx context.Context, d Driver, spec Spec) (*Child, error) {
	if d == nil {
		d = Exec
	}
	p, err := d.Start(ctx, spec)
	if err != nil {
		if _, ok := errors.AsType[*StartError](err); !ok {
			cmd := ""
			if len(spec.Command) > 0 {
				cmd = spec.Command[0]
			}
			err = &StartError{Instance: spec.Instance, Command: cmd, Err: err}
		}
		return nil, err
	}
	// A driver that can read the start time before it reaps the process
	// says so (Attach asks); otherwise the pid may already belong to
	// someone else.
	return Attach(p), nil
}

// Attach returns a Child for a process a driver re-attached to (an
// external driver's Recover, see package driverplugin), as Start does for
// one it started. Its start time is read from /proc.
func Attach(p Process) *Child {
	c := &Child{proc: p}
	if st, ok := p.(interface{ StartTime() uint64 }); ok {
		c.startTime = st.StartTime()
	} else if t, err := ProcStartTime(p.PID()); err == nil {
		c.startTime = t
	}
	return c
}

// PID is the process id of the child, which is also its process group id.
// With a cgroup, the child's other processes are in it, whatever their
// group.
func (c *Child) PID() int { return c.proc.PID() }

// StartTime is the child's start time in clock ticks since boot, as in
// /proc/<pid>/stat, read right after the start; 0 if unknown. Persist it with
// the pid and compare it with ProcStartTime before signalling a pid later.
func (c *Child) StartTime() uint64 { return c.startTime }

// Tracking describes how the child's processes are tracked, for ps:
// "cgroup <dir>" or "process group <pgid>"; "" if the driver does not say.
func (c *Child) Tracking() string {
	if t, ok := c.proc.(interface{ Tracking() string }); ok {
		return t.Tracking()
	}
	return ""
}

// Usage reads what the child uses now from its cgroups; figures it cannot
// read (no cgroup with that controller, or a driver that does not say)
// are -1.
func (c *Child) Usage() Usage {
	if u, ok := c.proc.(interface{ Usage() Usage }); ok {
		return u.Usage()
	}
	return Usage{Memory: -1, CPUTime: -1, PIDs: -1}
}

// Done is closed when the child has exited (see the state machine above).
func (c *Child) Done() <-chan struct{} { return c.proc.Done() }

// Exit is how the child exited; before Done is closed its Err is
// ErrNotExited.
func (c *Child) Exit() Exit { return c.proc.Exit() }

// Signal sends sig to every process of the child that can be proven its
// own (its cgroup, or its process group and the processes that carry its
// marks). After the child has exited it returns os.ErrProcessDone.
func (c *Child) Signal(sig syscall.Signal) error { return c.proc.Signal(sig) }

// Stop sends SIGTERM to every process of the child and waits up to grace
// for the leader to exit; after that, or when ctx ends, it sends SIGKILL to
// all of them. It then waits for Done (SIGKILL cannot be caught, so only a
// process stuck in the kernel can delay this) and returns the exit. Once the
// leader has exited the rest of the child is always sent SIGKILL, and Done
// waits until it is gone, so nothing of the child is left running.
//
// Stop may be called any number of times, also concurrently: SIGTERM and
// SIGKILL are each sent once, the shortest grace of concurrent calls wins,
// and every call returns the same Exit.
func (c *Child) Stop(ctx context.Context, grace time.Duration) Exit {
	select {
	case <-c.Done():
		return c.Exit()
	default:
	}
	c.signalOnce(&c.stopping, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.Done():
		return c.Exit()
	case <-t.C:
	case <-ctx.Done():
	}
	c.signalOnce(&c.killed, syscall.SIGKILL)
	<-c.Done()
	return c.Exit()
}

// Release stops supervising the child without signalling it, for a master
// that leaves its children running for its successor to Adopt. For a child
// from Adopt it ends the goroutine that watches the process, and Done then
// stays open unless the child had already exited. For a child from Start
// it does nothing: only the parent can reap its child, so the driver's
// goroutine keeps waiting until the process exits (when the parent process
// itself exits, the child is inherited by init, which reaps it).
//
// Call Release only when no Stop is waiting for Done. It is idempotent.
func (c *Child) Release() {
	if r, ok := c.proc.(interface{ release() }); ok {
		r.release()
	}
}

// Adopted reports whether the child came from Adopt rather than Start.
func (c *Child) Adopted() bool {
	_, ok := c.proc.(interface{ release() })
	return ok
}

// signalOnce sends sig to the group unless *sent says it was sent already.
// Errors are ignored: the only expected one is os.ErrProcessDone.
func (c *Child) signalOnce(sent *bool, sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *sent {
		return
	}
	*sent = true
	_ = c.proc.Signal(sig)
}
