package master

import (
	"context"
	"errors"
	"os"
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
//   - if its pid runs with the recorded start time (and, with a cgroup, is
//     in the child's cgroup), the child is adopted (spawn.Adopt): watched
//     through a pidfd, its control socket re-opened at the recorded path,
//     its ports still leased under its allocation id, and reported in the
//     first hello with Adopted set;
//   - if the process is gone, or its pid now belongs to an unrelated process
//     (another start time, or not in the cgroup), it is reported as an exit
//     in the first hello, its leases are released and its socket file
//     removed. What is left of the child is stopped first (SIGTERM,
//     StopGrace, SIGKILL; spawn.Sweep): its cgroup, or the processes that
//     carry its BERTH_ALLOC and started no earlier than it. A process that
//     merely got a recorded pid or group id is never signalled;
//   - if it runs but cannot be watched (no pidfd support), it is stopped
//     the same way and reported.
//
// Then the children of earlier runs that no record names (master.db lost)
// are stopped: the master's other sub-cgroups, and the processes that carry
// its BERTH_MASTER (see tracking.orphans). Only then are leases whose owner
// is no adopted child reclaimed. It runs in Open before any goroutine, so it
// needs no lock but takes them anyway.
func (a *Agent) adoptChildren(ctx context.Context) {
	began := time.Now()
	recs, err := a.state.all()
	if err != nil {
		a.log.Error("read child records", "err", err)
	}
	var gone []*record
	var rest []leftover // what is left of gone children, stopped before their leases go
	reasons := map[string]string{}
	for _, r := range recs {
		tr := r.tracking()
		if r.PID <= 0 {
			// Written just before a spawn the previous run did not live
			// to record: look for the child in its cgroup, or by its
			// BERTH_ALLOC.
			if pid, start, ok := spawn.FindLeader(tr); ok {
				a.log.Info("found a child spawned just before the previous run ended", "instance", r.Instance, "pid", pid)
				r.PID, r.StartTime, r.StartedAt = pid, start, time.Now().UTC()
				if err := a.state.put(r); err != nil {
					a.log.Error("persist child record", "instance", r.Instance, "err", err)
				}
			}
		}
		if proc, ok := a.recoverChild(r); ok {
			a.adopt(r, proc)
			continue
		}
		proc, err := spawn.Adopt(r.PID, r.StartTime, tr)
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
		rest = append(rest, leftover{alloc: r.Alloc, instance: r.Instance, track: tr, since: r.StartTime})
	}
	goneAllocs := make([]string, len(gone))
	for i, r := range gone {
		goneAllocs[i] = r.Alloc
	}
	rest = append(rest, a.track.orphans(a.knownAllocs(goneAllocs))...)
	a.sweep(ctx, rest)
	for _, r := range gone {
		if _, err := a.office.Release(r.Alloc); err != nil {
			a.log.Error("release ports", "instance", r.Instance, "err", err)
		}
		if err := a.state.delete(r.Alloc); err != nil {
			a.log.Error("delete child record", "instance", r.Instance, "err", err)
		}
		removePipe(r.Pipe)
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
	var pipe *pipes.Listener
	if r.Pipe != "" {
		// Nobody can be listening: the runtime directory's databases are
		// locked by this master. The child redials the path by itself.
		os.Remove(r.Pipe)
		var err error
		if pipe, err = listenPipe(r.Pipe); err != nil {
			a.log.Warn("re-open adopted child's pipe; it runs without one", "instance", r.Instance, "err", err)
		}
		c.pipe = pipe // c is not shared yet
	}
	if hasMesh(&r.Need) {
		// Its environment names its upstream ports and peers file: listen
		// on the same ports again (one that cannot is logged, shown by
		// `master ps`, sent to the child as mesh.error and retried).
		c.mesh, _ = a.openChildMesh(c, r.Upstreams, r.PeersFile, true)
	}
	a.mu.Lock()
	a.children[r.Alloc] = c
	a.mu.Unlock()
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.servePipe(c, pipe) }()
	go func() { defer a.wg.Done(); a.wait(c) }()
	if c.mesh != nil {
		c.mesh.start()
	}
	a.log.Info("adopted child", "instance", r.Instance, "pid", r.PID, "ports", r.Ports, "ready", r.Ready, "tracking", proc.Tracking())
}

// hasChild reports whether alloc is a child of this master, registered from
// its grant (before it leases) until its exit has been handled.
func (a *Agent) hasChild(alloc string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.children[alloc]
	return ok
}
