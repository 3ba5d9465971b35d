package master

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"berth/pipes"
	"berth/spawn"
)

// Reasons reported for children found gone when the master starts.
const (
	exitedWhileDown = "exited while the master was down (status unknown)"
	notAdoptable    = "could not be adopted after a master restart: "
)

// adoptChildren takes over the children recorded in master.db by a previous
// run of this master (one that left them running, crashed or was killed).
// For each record:
//
//   - if its pid runs with the recorded start time, the child is adopted
//     (spawn.Adopt): watched through a pidfd, its control socket re-opened
//     at the recorded path, its ports still leased under its allocation id,
//     and reported in the first hello with Adopted set;
//   - if the process is gone, or its pid now belongs to an unrelated process
//     (another start time), it is reported as an exit in the first hello,
//     its leases are released and its socket file removed. An unrelated
//     process is never signalled. What is left of a gone leader's process
//     group (members whose group id is still the leader's pid) is stopped:
//     SIGTERM, StopGrace, SIGKILL;
//   - if it runs but cannot be watched (no pidfd support), it is stopped
//     like a leader-less group and reported.
//
// Then leases whose owner is no adopted child are reclaimed. It runs in
// Open before any goroutine, so it needs no lock but takes them anyway.
func (a *Agent) adoptChildren(ctx context.Context) {
	began := time.Now()
	recs, err := a.state.all()
	if err != nil {
		a.log.Error("read child records", "err", err)
	}
	var gone []*record
	var stop []*record // process groups to stop before their leases go
	reasons := map[string]string{}
	for _, r := range recs {
		if r.PID <= 0 {
			// Written just before a spawn the previous run did not live
			// to record: look for the child by its allocation id.
			if pid, start, ok := findSpawned(r.Alloc); ok {
				a.log.Info("found a child spawned just before the previous run ended", "instance", r.Instance, "pid", pid)
				r.PID, r.StartTime, r.StartedAt = pid, start, time.Now().UTC()
				if err := a.state.put(r); err != nil {
					a.log.Error("persist child record", "instance", r.Instance, "err", err)
				}
			}
		}
		proc, err := spawn.Adopt(r.PID, r.StartTime, spawn.Tracking{Marks: []string{"BERTH_ALLOC=" + r.Alloc}})
		switch {
		case err == nil:
			a.adopt(r, proc)
			continue
		case errors.Is(err, spawn.ErrGone):
			a.log.Info("child exited while the master was down", "instance", r.Instance, "pid", r.PID)
			reasons[r.Alloc] = exitedWhileDown
		case errors.Is(err, spawn.ErrPIDReused):
			a.log.Warn("child's pid now belongs to another process, which is left alone",
				"instance", r.Instance, "pid", r.PID, "err", err)
			reasons[r.Alloc] = exitedWhileDown
		default:
			a.log.Error("cannot adopt child; stopping it", "instance", r.Instance, "pid", r.PID, "err", err)
			reasons[r.Alloc] = notAdoptable + err.Error()
		}
		gone = append(gone, r)
		stop = append(stop, r)
	}
	a.stopGroups(ctx, stop)
	for _, r := range gone {
		if _, err := a.office.Release(r.Alloc); err != nil {
			a.log.Error("release ports", "instance", r.Instance, "err", err)
		}
		if err := a.state.delete(r.Alloc); err != nil {
			a.log.Error("delete child record", "instance", r.Instance, "err", err)
		}
		if r.Pipe != "" {
			os.Remove(r.Pipe)
		}
		a.mu.Lock()
		a.keepUnsentLocked(&pipes.Exited{Alloc: r.Alloc, Instance: r.Instance, Code: -1, Reason: reasons[r.Alloc]})
		a.mu.Unlock()
	}
	if rel, err := a.office.Reclaim(a.hasChild); err != nil {
		a.log.Error("reclaim leases", "err", err)
	} else if len(rel) > 0 {
		a.log.Info("reclaimed port leases of children that no longer exist", "count", len(rel))
	}
	if len(recs) > 0 {
		a.log.Info("children of the previous run", "adopted", len(recs)-len(gone), "gone", len(gone),
			"took", time.Since(began).Round(time.Microsecond))
	}
}

// adopt registers an adopted child and starts its pipe server and waiter.
func (a *Agent) adopt(r *record, proc *spawn.Child) {
	c := &child{alloc: r.Alloc, instance: r.Instance, need: r.Need, ports: r.Ports, pipePath: r.Pipe,
		logPath: r.Log, started: r.StartedAt, proc: proc, adopted: true, ready: r.Ready, done: make(chan struct{})}
	if r.Pipe != "" {
		// Nobody can be listening: the runtime directory's databases are
		// locked by this master. The child redials the path by itself.
		os.Remove(r.Pipe)
		pipe, err := pipes.Listen(r.Pipe)
		if err != nil {
			a.log.Warn("re-open adopted child's pipe; it runs without one", "instance", r.Instance, "err", err)
		}
		c.pipe = pipe
	}
	a.mu.Lock()
	a.children[r.Alloc] = c
	a.mu.Unlock()
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.servePipe(c) }()
	go func() { defer a.wg.Done(); a.wait(c) }()
	a.log.Info("adopted child", "instance", r.Instance, "pid", r.PID, "ports", r.Ports, "ready", r.Ready)
}

// stopGroups stops what is left of children whose leader is not (or no
// longer) ours to watch, all at once: spawn.Sweep signals only processes
// that carry the child's BERTH_ALLOC and started no earlier than it, so a
// recorded group id that a stranger got meanwhile is left alone.
func (a *Agent) stopGroups(ctx context.Context, groups []*record) {
	var wg sync.WaitGroup
	for _, r := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := spawn.Sweep(ctx, spawn.Tracking{Marks: []string{"BERTH_ALLOC=" + r.Alloc}}, r.StartTime, a.opts.StopGrace); err != nil {
				a.log.Error("stop what is left of a child", "instance", r.Instance, "err", err)
			}
		}()
	}
	wg.Wait()
}

// hasChild reports whether alloc is a child of this master, registered from
// its grant (before it leases) until its exit has been handled.
func (a *Agent) hasChild(alloc string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.children[alloc]
	return ok
}

// findSpawned looks in /proc for the leader of the process group a child
// of allocation alloc leads: the process whose environment holds
// BERTH_ALLOC=<alloc> and whose group id is its own pid (its grandchildren
// share the variable but not the group leadership). It returns the pid and
// its /proc start time.
func findSpawned(alloc string) (int, uint64, bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, false
	}
	want := []byte("BERTH_ALLOC=" + alloc + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !(bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...))) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
			continue
		}
		start, err := spawn.ProcStartTime(pid)
		if err != nil {
			continue
		}
		return pid, start, true
	}
	return 0, 0, false
}
