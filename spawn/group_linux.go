package spawn

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// groupTracker tracks the processes of a child without a cgroup: its
// process group while the leader provably holds the group id, and the
// processes that carry the child's marks in their environment and did not
// start before it (which finds those that left the group with setsid).
//
// Nothing else is ever signalled. A group id read back from storage proves
// nothing: the kernel reuses it once the group is empty, and an unrelated
// process that calls setsid() gets it. Its methods are safe for concurrent
// use.
type groupTracker struct {
	pgid  int
	since uint64   // the leader's start time; nothing of the child started before it
	marks []string // "K=V" entries every process of the child carries
	// held reports whether the leader provably holds the group id now,
	// so that kill(-pgid) reaches the child's group and nobody else; it
	// runs the kill while that stays true (see execProcess.holdGroup).
	held func(kill func()) bool
	// trusted: the whole group was sent SIGKILL while its leader provably
	// held the id (a child this program started and reaps), so waitEmpty
	// waits for what is left of it even without marks once the leader is
	// reaped. Otherwise group members count only while held says so.
	trusted bool
	killed  atomic.Bool

	mu sync.Mutex // Protects following.
	// proven are the processes once found carrying the marks, by pid, with
	// their start time: a process that is exiting has lost its environment
	// (its memory is gone) but is not a zombie yet, and still holds its
	// sockets; it stays the child's until it is gone.
	proven map[int]uint64
}

func (g *groupTracker) String() string { return "process group " + strconv.Itoa(g.pgid) }

// member is a process found by a scan of /proc.
type member struct {
	pid, pgrp int
}

// members scans /proc for the live processes of the child: those in the
// group (if trusted) and those that carry the marks, started no earlier
// than the leader.
func (g *groupTracker) members(markedOnly bool) []member {
	group := !markedOnly && g.pgid > 1 && (g.trusted || g.held != nil && g.held(func() {}))
	if len(g.marks) == 0 && !group {
		return nil
	}
	var out []member
	self := os.Getpid()
	eachProc(func(pid int, st procStat) {
		if pid == self || st.start < g.since {
			return
		}
		if group && st.pgrp == g.pgid {
			out = append(out, member{pid, st.pgrp})
			return
		}
		if len(g.marks) > 0 && g.marked(pid, st) {
			out = append(out, member{pid, st.pgrp})
		}
	})
	return out
}

// marked reports whether pid carries the marks now, or did on an earlier
// scan under the same start time (see proven).
func (g *groupTracker) marked(pid int, st procStat) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch readMarks(pid, g.marks) {
	case marksHeld:
		if g.proven == nil {
			g.proven = map[int]uint64{}
		}
		g.proven[pid] = st.start
		return true
	case marksAbsent:
		// A readable environment without the marks: the process exec'd
		// with a new one (env -u, a wrapper that cleans its environment).
		// It is no longer the child's, whatever an earlier scan saw.
		delete(g.proven, pid)
		return false
	}
	start, ok := g.proven[pid]
	return ok && start == st.start
}

// signal sends sig to the group if its leader provably holds it, and to
// every marked process outside it, each checked through a pidfd.
func (g *groupTracker) signal(sig syscall.Signal) error {
	sentGroup := false
	if g.pgid > 1 && g.held != nil {
		g.held(func() { sentGroup = killGroup(g.pgid, sig) == nil })
	}
	sent := sentGroup
	for _, m := range g.members(true) {
		if sentGroup && m.pgrp == g.pgid {
			continue
		}
		if signalProven(m.pid, g.since, g.marks, sig) {
			sent = true
		}
	}
	if !sent {
		return os.ErrProcessDone
	}
	return nil
}

func (g *groupTracker) kill() {
	g.killed.Store(true)
	_ = g.signal(syscall.SIGKILL)
}

// waitEmpty polls /proc (5 ms, doubling to 100 ms) until no process of
// the child is left. After kill, marked processes found on a pass are
// sent SIGKILL again, in case one was forked as the first one went out.
func (g *groupTracker) waitEmpty(ctx context.Context) error {
	d := 5 * time.Millisecond
	for {
		ms := g.members(false)
		if len(ms) == 0 {
			return nil
		}
		if g.killed.Load() {
			for _, m := range ms {
				signalProven(m.pid, g.since, g.marks, syscall.SIGKILL)
			}
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		d = min(2*d, 100*time.Millisecond)
	}
}

func (g *groupTracker) cleanup() {}

// signalProven sends sig to pid if it is provably the child's: pinned by a
// pidfd first, it must then be alive, have started no earlier than since
// and carry every mark. A pid reused after the pidfd was opened cannot be
// reached through it. With no marks nothing is proven.
func signalProven(pid int, since uint64, marks []string, sig syscall.Signal) bool {
	if len(marks) == 0 || pid <= 1 {
		return false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	st, err := readProc(pid)
	if err != nil || gone(pid, st) || st.start < since || !hasMarks(pid, marks) {
		return false
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0) == nil
}

// hasMarks reports whether the environment of pid holds every mark as a
// whole "K=V" entry. A process whose main thread has exited shows no
// environment under its pid; it is read through one of its live threads.
func hasMarks(pid int, marks []string) bool {
	return readMarks(pid, marks) == marksHeld
}

// markState is what the environment of a process says about the marks.
type markState int

const (
	marksUnknown markState = iota // no environment could be read: the process is exiting, or gone
	marksHeld                     // every mark is there
	marksAbsent                   // the environment was read and a mark is missing
)

// readMarks reads the environment of pid, or of one of its live threads
// when its main thread has exited, and says whether it holds every mark.
func readMarks(pid int, marks []string) markState {
	dir := "/proc/" + strconv.Itoa(pid)
	check := func(env []byte) markState {
		if len(bytes.Trim(env, "\x00")) == 0 {
			// Strings wiped in place (a program hiding its secrets): the
			// environment says nothing any more.
			return marksUnknown
		}
		if envHas(env, marks) {
			return marksHeld
		}
		return marksAbsent
	}
	env, err := os.ReadFile(dir + "/environ")
	if err == nil && len(env) > 0 {
		return check(env)
	}
	for _, tid := range otherThreads(pid) {
		if env, err := os.ReadFile(dir + "/task/" + tid + "/environ"); err == nil && len(env) > 0 {
			return check(env)
		}
	}
	return marksUnknown
}

// gone reports whether the process pid has ended: its main thread is a
// zombie (or dead) and no other thread of it is left. A main thread can
// exit before the others (pthread_exit, or a multi-threaded program whose
// threads are still tearing down): the process then still runs and holds
// its sockets, though /proc/<pid>/stat says Z.
func gone(pid int, st procStat) bool {
	return (st.state == 'Z' || st.state == 'X') && len(otherThreads(pid)) == 0
}

// otherThreads lists the ids of the threads of process pid besides its
// main thread.
func otherThreads(pid int) []string {
	p := strconv.Itoa(pid)
	entries, err := os.ReadDir("/proc/" + p + "/task")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.Name() != p {
			out = append(out, e.Name())
		}
	}
	return out
}

// envHas reports whether a NUL-separated environment holds every mark.
func envHas(env []byte, marks []string) bool {
	for _, m := range marks {
		found := false
		for e := range bytes.SplitSeq(env, []byte{0}) {
			if string(e) == m {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// eachProc calls fn for every live process in /proc: not gone (see gone).
func eachProc(fn func(pid int, st procStat)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		st, err := readProc(pid)
		if err != nil || gone(pid, st) {
			continue
		}
		fn(pid, st)
	}
}

// FindLeader finds the leader of a child whose pid was never recorded (a
// master that died between spawning it and writing its pid down): in the
// child's cgroup, or else among the processes that carry its marks, the
// one that leads its own process group, as every child does; its
// grandchildren share the cgroup and the marks but not the leadership. It
// returns the pid and start time of the earliest such process.
func FindLeader(tr Tracking) (pid int, start uint64, ok bool) {
	consider := func(p int, st procStat) {
		if st.pgrp == p && (!ok || st.start < start) {
			pid, start, ok = p, st.start, true
		}
	}
	if tr.Cgroup != "" {
		pids, _ := (&cgroupTracker{dir: tr.Cgroup}).procs()
		for _, p := range pids {
			if st, err := readProc(p); err == nil && st.state != 'Z' {
				consider(p, st)
			}
		}
		return pid, start, ok
	}
	if len(tr.Marks) == 0 {
		return 0, 0, false
	}
	eachProc(func(p int, st procStat) {
		if hasMarks(p, tr.Marks) {
			consider(p, st)
		}
	})
	return pid, start, ok
}

// EnvValues returns, sorted and without repeats, the values of key in the
// environments of the live processes that carry every mark: a restarted
// master lists with it the allocations of the children its predecessor
// started (marks: its own BERTH_MASTER; key: BERTH_ALLOC).
func EnvValues(marks []string, key string) []string {
	if len(marks) == 0 {
		return nil
	}
	var out []string
	self := os.Getpid()
	eachProc(func(pid int, _ procStat) {
		if pid == self {
			return
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil || !envHas(env, marks) {
			return
		}
		for e := range bytes.SplitSeq(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(e, []byte(key+"=")); ok {
				out = append(out, string(v))
			}
		}
	})
	slices.Sort(out)
	return slices.Compact(out)
}

// Sweep stops what is left of a child nobody watches any more (its leader
// gone, or its record lost): SIGTERM to every process Tracking proves is
// the child's, up to grace for them to exit, then SIGKILL, and it waits
// until none is left, or ctx ends. A cgroup is removed once empty. since
// is the leader's recorded start time (0 if unknown). Without a cgroup
// only marked processes are found: a group id read back from storage may
// belong to a stranger by now, so it is not used. Then the child's v1
// cgroups (Tracking.LimitCgroups) are removed, anything still in them
// sent SIGKILL first; a Tracking with nothing else only does that.
func Sweep(ctx context.Context, tr Tracking, since uint64, grace time.Duration) error {
	if err := sweep(ctx, tr, since, grace); err != nil {
		return err
	}
	removeV1(ctx, tr.LimitCgroups)
	return nil
}

func sweep(ctx context.Context, tr Tracking, since uint64, grace time.Duration) error {
	if tr.Cgroup == "" && len(tr.Marks) == 0 {
		return nil // nothing but v1 cgroups (LimitCgroups) to find it by
	}
	var t tracker
	if tr.Cgroup != "" {
		t = &cgroupTracker{dir: tr.Cgroup}
	} else {
		t = &groupTracker{since: since, marks: tr.Marks}
	}
	if err := t.signal(syscall.SIGTERM); errors.Is(err, os.ErrProcessDone) {
		// Nothing to signal; a cgroup may still be populated by a process
		// that is exiting.
		if err := t.waitEmpty(ctx); err != nil {
			return err
		}
		t.cleanup()
		return nil
	}
	gctx, cancel := context.WithTimeout(ctx, grace)
	err := t.waitEmpty(gctx)
	cancel()
	if err != nil {
		t.kill()
		if err := t.waitEmpty(ctx); err != nil {
			return err
		}
	}
	t.cleanup()
	return nil
}
