package driverplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/spawn"
)

// ProcessDriver is a TaskDriver that runs each task as a child of the
// driver process with a spawn.Driver (spawn.Exec for a "raw exec" driver,
// or one that wraps the command, such as a sandbox), and recovers tasks
// with spawn.Adopt after the driver restarted. A driver binary is then
//
//	func main() {
//		driverplugin.Serve(driverplugin.NewProcessDriver(driverplugin.Fingerprint{
//			Name: "rawexec", Version: "1.0.0", Available: true, Signals: true,
//		}, spawn.Exec))
//	}
//
// A task started by this process knows its exit status; one recovered
// after a restart of the driver does not (Exit.Err spawn.ErrExitUnknown),
// as for a master's adopted children. Stats reads the leader's
// /proc/<pid>/stat and statm only.
type ProcessDriver struct {
	fp     Fingerprint
	driver spawn.Driver
	// Check, if set, is called by Fingerprint to say whether the driver
	// can run here; a non-nil error makes it unavailable with that reason.
	Check func(ctx context.Context) error
	// Options, if set, checks a need's driver options before the master
	// bids for it (OptionsChecker); a non-nil error is the master's reason
	// not to bid. Start gets the options in Task.Spec.DriverOpts either way.
	Options func(opts []string) error

	mu    sync.Mutex // Protects following.
	tasks map[string]*procTask
}

type procTask struct {
	child *spawn.Child
	h     Handle
}

// procState is ProcessDriver's Handle.State.
type procState struct {
	PID       int      `json:"pid"`
	StartTime uint64   `json:"start_time"`
	Cgroup    string   `json:"cgroup,omitempty"`
	Marks     []string `json:"marks,omitempty"`
}

// NewProcessDriver returns a ProcessDriver that reports fp and starts tasks
// with d (spawn.Exec if nil).
func NewProcessDriver(fp Fingerprint, d spawn.Driver) *ProcessDriver {
	if d == nil {
		d = spawn.Exec
	}
	return &ProcessDriver{fp: fp, driver: d, tasks: map[string]*procTask{}}
}

func (d *ProcessDriver) Fingerprint(ctx context.Context) Fingerprint {
	fp := d.fp
	if d.Check != nil {
		if err := d.Check(ctx); err != nil {
			fp.Available, fp.Reason = false, err.Error()
		}
	}
	return fp
}

// CheckOptions calls d.Options, if set.
func (d *ProcessDriver) CheckOptions(_ context.Context, opts []string) error {
	if d.Options == nil {
		return nil
	}
	return d.Options(opts)
}

func (d *ProcessDriver) task(id string) (*procTask, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrTaskNotFound, id)
	}
	return t, nil
}

func (d *ProcessDriver) Start(ctx context.Context, t Task) (Handle, error) {
	if t.Limits != (Limits{}) && !d.fp.ResourceLimits {
		return Handle{}, fmt.Errorf("%w: driver %s enforces no resource limits", ErrBadRequest, d.fp.Name)
	}
	d.mu.Lock()
	_, dup := d.tasks[t.ID]
	d.mu.Unlock()
	if dup {
		return Handle{}, fmt.Errorf("%w: task %q already exists", ErrBadRequest, t.ID)
	}
	c, err := spawn.Start(ctx, d.driver, t.Spec)
	if err != nil {
		return Handle{}, err
	}
	st, _ := json.Marshal(procState{PID: c.PID(), StartTime: c.StartTime(), Cgroup: t.Spec.Tracking.Cgroup, Marks: t.Spec.Tracking.Marks})
	h := Handle{ID: t.ID, PID: c.PID(), StartTime: c.StartTime(), Tracking: c.Tracking(), State: st}
	d.mu.Lock()
	d.tasks[t.ID] = &procTask{child: c, h: h}
	d.mu.Unlock()
	return h, nil
}

func (d *ProcessDriver) Wait(ctx context.Context, id string) (spawn.Exit, error) {
	t, err := d.task(id)
	if err != nil {
		return spawn.Exit{}, err
	}
	select {
	case <-t.child.Done():
	case <-ctx.Done():
		return spawn.Exit{}, ctx.Err()
	}
	d.mu.Lock()
	delete(d.tasks, id) // reported: the master forgets it too
	d.mu.Unlock()
	return t.child.Exit(), nil
}

func (d *ProcessDriver) Stop(ctx context.Context, id string, grace time.Duration) (spawn.Exit, error) {
	t, err := d.task(id)
	if err != nil {
		return spawn.Exit{}, err
	}
	return t.child.Stop(ctx, grace), nil
}

func (d *ProcessDriver) Signal(_ context.Context, id string, sig syscall.Signal) error {
	t, err := d.task(id)
	if err != nil {
		return err
	}
	return t.child.Signal(sig)
}

func (d *ProcessDriver) Stats(_ context.Context, id string) (Stats, error) {
	t, err := d.task(id)
	if err != nil {
		return Stats{}, err
	}
	return procStats(t.child.PID())
}

// Recover returns the task as it is if this process still runs it (the
// master restarted, not the driver); otherwise it adopts the process from
// the handle's state.
func (d *ProcessDriver) Recover(_ context.Context, h Handle) (Handle, error) {
	d.mu.Lock()
	t, ok := d.tasks[h.ID]
	d.mu.Unlock()
	if ok {
		return t.h, nil
	}
	var st procState
	if err := json.Unmarshal(h.State, &st); err != nil {
		return Handle{}, fmt.Errorf("%w: task %q: state: %v", ErrBadRequest, h.ID, err)
	}
	c, err := spawn.Adopt(st.PID, st.StartTime, spawn.Tracking{Cgroup: st.Cgroup, Marks: st.Marks})
	if errors.Is(err, spawn.ErrPIDReused) {
		err = fmt.Errorf("%w (%w)", spawn.ErrGone, err)
	}
	if err != nil {
		return Handle{}, err
	}
	h.PID, h.StartTime, h.Tracking = c.PID(), c.StartTime(), c.Tracking()
	d.mu.Lock()
	if t, ok := d.tasks[h.ID]; ok { // recovered twice at once
		d.mu.Unlock()
		c.Release()
		return t.h, nil
	}
	d.tasks[h.ID] = &procTask{child: c, h: h}
	d.mu.Unlock()
	return h, nil
}

// procStats reads the CPU time and resident size of pid.
func procStats(pid int) (Stats, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stats{}, err
	}
	// Fields after the command (which may hold spaces) start after ") ".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return Stats{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return Stats{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseUint(f[12], 10, 64) // field 15
	var st Stats
	st.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	if m, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm"); err == nil {
		if mf := strings.Fields(string(m)); len(mf) > 1 {
			pages, _ := strconv.ParseUint(mf[1], 10, 64)
			st.RSS = pages * uint64(os.Getpagesize())
		}
	}
	return st, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
