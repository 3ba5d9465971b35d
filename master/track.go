package master

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"

	"berth/needs"
	"berth/spawn"
)

// Values of the config key "tracking": how a master tracks its children.
const (
	// TrackAuto ("" or "auto") uses a cgroup per child where a cgroup v2
	// hierarchy is writable, and process groups otherwise.
	TrackAuto = "auto"
	// TrackCgroup requires cgroups; the master does not start without.
	TrackCgroup = "cgroup"
	// TrackProcessGroup uses process groups even where cgroups would work.
	TrackProcessGroup = "processgroup"
)

func validateTracking(mode string) error {
	switch mode {
	case "", TrackAuto, TrackCgroup, TrackProcessGroup:
		return nil
	}
	return &needs.FieldError{Field: "tracking", Msg: fmt.Sprintf("%q: want %q, %q or %q", mode, TrackAuto, TrackCgroup, TrackProcessGroup)}
}

// Environment variables a master adds to each child's environment, besides
// the child contract's BERTH_ALLOC.
const (
	// envMaster names the master that started the child: the hash of its
	// absolute runtime directory (runtimeHash), stable across restarts and
	// across the loss of master.id. A restarted master finds by it the
	// children its predecessor started and no record names any more.
	envMaster = "BERTH_MASTER"
	envAlloc  = "BERTH_ALLOC"
)

// tracking is how this master tracks its children. It is set in Open and
// read-only afterwards.
type tracking struct {
	hash   string // runtimeHash of the runtime directory
	cgroup string // the master's cgroup, <cgroup2 mount>/berth/<hash>; "" for process groups
	// limits says where the cgroups that enforce needs' limits go, and
	// which limits cannot be enforced here.
	limits spawn.LimitCgroups
}

// runtimeHash names a runtime directory: the first 16 hex digits of the
// SHA-256 of its absolute, cleaned path. Many masters on one machine have
// as many runtime directories, so their cgroups never collide.
func runtimeHash(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("hash runtime directory: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:8]), nil
}

// newTracking sets up the tracking that mode asks for: the master's cgroup
// if cgroups are asked for or allowed and usable, else process groups (an
// error if mode is TrackCgroup).
func newTracking(mode, runtimeDir string, log *slog.Logger) (t tracking, err error) {
	hash, err := runtimeHash(runtimeDir)
	if err != nil {
		return tracking{}, err
	}
	t = tracking{hash: hash}
	defer func() { t.limits = spawn.FindLimitCgroups(t.cgroup, filepath.Join("berth", hash)) }()
	if mode == TrackProcessGroup {
		return t, nil
	}
	mount, err := spawn.CgroupMount()
	if err == nil {
		dir := filepath.Join(mount, "berth", hash)
		if err = spawn.MakeCgroup(dir); err == nil {
			t.cgroup = dir
			return t, nil
		}
	}
	if mode == TrackCgroup {
		return tracking{}, fmt.Errorf("tracking %q: %w", mode, err)
	}
	log.Warn("no writable cgroup v2 hierarchy: children are tracked by process group and BERTH_ALLOC", "err", err)
	return t, nil
}

// String says which tracking is in use: "cgroup <dir>" or "process group".
func (t tracking) String() string {
	if t.cgroup != "" {
		return "cgroup " + t.cgroup
	}
	return "process group"
}

// remove removes the master's cgroups once it has no child left: when the
// master closes after stopping every child.
func (t tracking) remove() {
	if t.cgroup != "" {
		spawn.RemoveCgroup(t.cgroup)
	}
	for _, d := range t.limits.Dirs() {
		spawn.RemoveCgroup(d)
	}
}

// finder says how a restarted master finds children no record names.
func (t tracking) finder() string {
	if t.cgroup != "" {
		return "the sub-cgroups of " + t.cgroup
	}
	return "the " + envMaster + "=" + t.hash + " in their environment"
}

// child returns the spawn tracking of a new child of allocation alloc
// whose need has limits l.
func (t tracking) child(alloc string, l needs.Limits) spawn.Tracking {
	tr := spawn.Tracking{Marks: allocMarks(alloc), LimitCgroups: t.limits.Child(alloc, l)}
	if t.cgroup != "" {
		tr.Cgroup, tr.Marks = filepath.Join(t.cgroup, alloc), nil
	}
	return tr
}

// allocMarks proves, without a cgroup, that a process belongs to the child
// of allocation alloc (together with a start time no older than the
// child's).
func allocMarks(alloc string) []string { return []string{envAlloc + "=" + alloc} }

// leftover is what may be left of a child nobody watches: a child of the
// previous run whose leader is gone, or one that no record names
// (master.db lost or deleted).
type leftover struct {
	alloc    string
	instance string // "" for a child no record names
	track    spawn.Tracking
	since    uint64 // the leader's recorded start time; 0 if unknown
}

// orphans finds the children of earlier runs that belong to none of the
// allocations known reports: the master's sub-cgroups, and the processes
// that carry this master's BERTH_MASTER (children started while it
// tracked by process group).
func (t tracking) orphans(known func(alloc string) bool) []leftover {
	var out []leftover
	seen := map[string]bool{}
	if t.cgroup != "" {
		names, _ := spawn.CgroupChildren(t.cgroup)
		for _, n := range names {
			if !known(n) {
				seen[n] = true
				out = append(out, leftover{alloc: n, track: spawn.Tracking{Cgroup: filepath.Join(t.cgroup, n)}})
			}
		}
	}
	mark := envMaster + "=" + t.hash
	for _, alloc := range spawn.EnvValues([]string{mark}, envAlloc) {
		if !known(alloc) && !seen[alloc] {
			seen[alloc] = true
			out = append(out, leftover{alloc: alloc, track: spawn.Tracking{Marks: []string{mark, envAlloc + "=" + alloc}}})
		}
	}
	// The v1 cgroups that enforce limits go with their child: those of a
	// child found above are added to its leftover, the others (their
	// child found by neither) are swept alone.
	for _, dir := range t.limits.Dirs() {
		names, _ := spawn.CgroupChildren(dir)
		for _, n := range names {
			if known(n) {
				continue
			}
			i := slices.IndexFunc(out, func(l leftover) bool { return l.alloc == n })
			if i < 0 {
				out = append(out, leftover{alloc: n})
				i = len(out) - 1
			}
			out[i].track.LimitCgroups = append(out[i].track.LimitCgroups, filepath.Join(dir, n))
		}
	}
	return out
}

// sweep stops every leftover (spawn.Sweep with the master's stop grace),
// all at once, and returns once they are all gone or ctx ended.
func (a *Agent) sweep(ctx context.Context, ls []leftover) {
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.instance == "" {
				a.log.Warn("stopping a child of an earlier run that no record names", "alloc", l.alloc, "tracking", l.track.String())
			} else {
				a.log.Info("stopping what is left of a child of the previous run", "instance", l.instance, "tracking", l.track.String())
			}
			if err := spawn.Sweep(ctx, l.track, l.since, a.opts.StopGrace); err != nil {
				a.log.Error("stop a child of an earlier run", "alloc", l.alloc, "err", err)
			}
		}()
	}
	wg.Wait()
}

// tracking is how the child of r is tracked: by the cgroup recorded for
// it, or else by its BERTH_ALLOC (a child started while the master
// tracked by process group, or by a master that predates cgroups).
func (r *record) tracking() spawn.Tracking {
	if r.Cgroup != "" {
		return spawn.Tracking{Cgroup: r.Cgroup, LimitCgroups: r.LimitCgroups}
	}
	return spawn.Tracking{Marks: allocMarks(r.Alloc), LimitCgroups: r.LimitCgroups}
}

// knownAllocs returns a func that reports whether alloc is a child of the
// Agent or in allocs.
func (a *Agent) knownAllocs(allocs []string) func(string) bool {
	return func(alloc string) bool { return slices.Contains(allocs, alloc) || a.hasChild(alloc) }
}
