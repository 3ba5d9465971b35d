package spawn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/needs"
)

// limitTracking returns the tracking of one child with limits l, the way
// a master sets it up: a test parent cgroup in the v2 tree (the
// controllers enabled for its children where they are delegated), and
// test directories in the v1 hierarchies of the others. The test is
// skipped where l cannot be enforced, unless BERTH_LIMITS=require (set by
// .ci/run for root), when it fails instead. Cleanup stops what is left
// and removes every directory.
func limitTracking(t *testing.T, l needs.Limits) Tracking {
	t.Helper()
	child := testCgroup(t) // the v2 one; its cleanup runs after ours
	return limitTrackingIn(t, l, filepath.Dir(child), filepath.Base(child))
}

// limitTrackingPG is limitTracking for a child tracked by its process
// group and a mark: only the v1 hierarchies can hold its limits.
func limitTrackingPG(t *testing.T, l needs.Limits) Tracking {
	t.Helper()
	tr := limitTrackingIn(t, l, "", "child")
	tr.Marks = []string{"SPAWN_MARK=" + randomName(t)}
	return tr
}

func limitTrackingIn(t *testing.T, l needs.Limits, parent, child string) Tracking {
	t.Helper()
	name := "spawn-test-" + randomName(t)
	if parent != "" {
		name = filepath.Base(parent)
	}
	lc := FindLimitCgroups(parent, filepath.Join("berth", name))
	t.Logf("limit cgroups: %s", lc)
	t.Cleanup(func() {
		for _, d := range lc.Dirs() {
			if err := syscall.Rmdir(d); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove test cgroup %s: %v", d, err)
			}
		}
	})
	if err := lc.Can(l); err != nil {
		if os.Getenv("BERTH_LIMITS") == "require" {
			t.Fatalf("BERTH_LIMITS=require: %v", err)
		}
		t.Skip(err)
	}
	tr := Tracking{LimitCgroups: lc.Child(child, l)}
	if parent != "" {
		tr.Cgroup = filepath.Join(parent, child)
	}
	t.Cleanup(func() {
		Sweep(context.Background(), tr, 0, 0)
		for _, d := range tr.LimitCgroups {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("cgroup %s left behind", d)
			}
		}
	})
	return tr
}

func limitedSpec(t *testing.T, l needs.Limits, mode string, args ...string) Spec {
	spec := helperSpec(t, mode, args...)
	spec.Tracking = limitTracking(t, l)
	spec.Limits = l
	return spec
}

// TestMemoryLimitOOM: a child that allocates past its memory limit is
// killed by the kernel, its exit says so, and its cgroups are gone; by
// its cgroup, or by its process group with v1 cgroups for the limit.
func TestMemoryLimitOOM(t *testing.T) {
	for _, mode := range []struct {
		name  string
		track func(*testing.T, needs.Limits) Tracking
	}{{"cgroup", limitTracking}, {"pgroup", limitTrackingPG}} {
		t.Run(mode.name, func(t *testing.T) {
			l := needs.Limits{Memory: 64 << 20}
			spec := helperSpec(t, "alloc", "1024")
			spec.Tracking, spec.Limits = mode.track(t, l), l
			spec.Env = append(spec.Env, spec.Tracking.Marks...)
			c := startChild(t, spec)
			ex := waitDone(t, c)
			log, _ := os.ReadFile(spec.LogPath)
			if !ex.OOMKilled || ex.Signal != "SIGKILL" {
				t.Fatalf("exit = %+v (%s), want SIGKILL and OOMKilled; log:\n%s", ex, ex, log)
			}
			if strings.Contains(string(log), "ready") {
				t.Fatalf("the child allocated 1 GiB under a 64M limit:\n%s", log)
			}
			if !strings.Contains(ex.String(), "oom-killed") {
				t.Errorf("exit string %q does not say oom-killed", ex)
			}
			t.Logf("exit %s after %s", ex, lastLine(log))
			dirs := spec.Tracking.LimitCgroups
			if spec.Tracking.Cgroup != "" {
				dirs = append(dirs, spec.Tracking.Cgroup)
			}
			for _, d := range dirs {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("cgroup %s still there after the exit: %v", d, err)
				}
			}
		})
	}
}

// TestSweepLimitCgroups: Sweep given nothing but a child's v1 cgroups (a
// child no record names, found only there) kills what is in them and
// removes them.
func TestSweepLimitCgroups(t *testing.T) {
	l := needs.Limits{Memory: 64 << 20, PIDs: 50}
	tr := limitTrackingPG(t, l)
	spec := helperSpec(t, "sleep-forever")
	spec.Tracking, spec.Limits = tr, l
	spec.Env = append(spec.Env, tr.Marks...)
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	if err := Sweep(t.Context(), Tracking{LimitCgroups: tr.LimitCgroups}, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	if ex := waitDone(t, c); ex.Signal != "SIGKILL" {
		t.Errorf("exit %s, want SIGKILL", ex)
	}
	for _, d := range tr.LimitCgroups {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s still there after Sweep: %v", d, err)
		}
	}
}

// TestMemoryLimitRoom: a child that stays under its limit runs, its usage
// is read against it, and a stop is not reported as an OOM kill.
func TestMemoryLimitRoom(t *testing.T) {
	l := needs.Limits{Memory: 256 << 20, PIDs: 100}
	spec := limitedSpec(t, l, "alloc", "32")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	u := c.Usage()
	if u.Memory < 32<<20 || u.Memory > int64(l.Memory) {
		t.Errorf("memory usage %d, want between 32 MiB and the limit", u.Memory)
	}
	if u.PIDs < 1 || u.PIDs > 100 {
		t.Errorf("pids usage %d, want 1-100", u.PIDs)
	}
	ex := c.Stop(context.Background(), 5*time.Second)
	if ex.OOMKilled {
		t.Errorf("a stopped child reported as OOM-killed: %+v", ex)
	}
}

// TestCPULimit: a CPU-bound child limited to 0.2 CPU uses about that,
// measured from its cgroup's CPU time over 3 s of wall time. The bounds
// are wide (0.05-0.4): this checks that the quota is enforced, not how
// fast the machine is; unlimited, the child would use a whole CPU.
func TestCPULimit(t *testing.T) {
	l := needs.Limits{CPUs: 0.2}
	spec := limitedSpec(t, l, "spin")
	spec.Env = append(spec.Env, "GOMAXPROCS=1")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	u0, t0 := c.Usage(), time.Now()
	if u0.CPUTime < 0 {
		t.Fatal("no CPU time in the child's cgroup")
	}
	deadline := t0.Add(3 * time.Second)
	for time.Now().Before(deadline) { // a measurement window, not a wait for an event
		time.Sleep(deadline.Sub(time.Now()))
	}
	u1, t1 := c.Usage(), time.Now()
	used := float64(u1.CPUTime-u0.CPUTime) / float64(t1.Sub(t0))
	t.Logf("used %.3f CPU over %s (limit %g)", used, t1.Sub(t0).Round(time.Millisecond), l.CPUs)
	if used < 0.05 || used > 0.4 {
		t.Errorf("used %.3f CPU, want 0.05-0.4 under a 0.2 limit", used)
	}
}

// TestPIDsLimit: a fork bomb stops at the pids limit. The bomb is bounded
// (a binary tree of depth 7: under 520 processes even without a limit),
// and everything of it is gone once Stop returns.
func TestPIDsLimit(t *testing.T) {
	l := needs.Limits{PIDs: 16}
	script := `b() { if [ "$1" -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & fi; sleep 1000; }; b 7`
	spec := Spec{Instance: t.Name(), Command: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		LogPath: t.TempDir() + "/child.log", Tracking: limitTracking(t, l), Limits: l}
	c := startChild(t, spec)
	g := &cgroupTracker{dir: spec.Tracking.Cgroup}
	retryUntil(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(spec.LogPath)
		return len(b) > 0 // sh complains of each fork the limit refused
	}, "a refused fork")
	most := 0
	for range 20 {
		pids, err := g.procs()
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, len(pids))
		if len(pids) > l.PIDs {
			t.Fatalf("%d processes in the child's cgroup, over the limit of %d", len(pids), l.PIDs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	log, _ := os.ReadFile(spec.LogPath)
	t.Logf("at most %d processes; log starts %q", most, firstLine(log))
	if most < l.PIDs/2 {
		t.Errorf("only %d processes: the bomb did not reach the limit", most)
	}
	c.Stop(context.Background(), time.Second)
	if pids, _ := g.procs(); len(pids) > 0 {
		t.Fatalf("processes %v left after Stop", pids)
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// TestLimitsNeedACgroup: limits for a child with no cgroup to hold them
// fail Start, naming them.
func TestLimitsNeedACgroup(t *testing.T) {
	spec := helperSpec(t, "exit", "0")
	spec.Limits = needs.Limits{Memory: 64 << 20}
	_, err := Start(t.Context(), nil, spec)
	if err == nil || !strings.Contains(err.Error(), "memory 64M") {
		t.Fatalf("Start = %v, want an error naming the limit", err)
	}
}

func TestV1Mount(t *testing.T) {
	mi := []byte(`31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`)
	for c, want := range map[string]string{"cpu": "/sys/fs/cgroup/cpu,cpuacct", "pids": "/sys/fs/cgroup/pids", "memory": ""} {
		if got := v1Mount(mi, c); got != want {
			t.Errorf("v1Mount(%s) = %q, want %q", c, got, want)
		}
	}
}

// TestLimiterV2Files: what the limiter writes to, and reads from, a child's
// cgroup v2 directory. The machine these tests were written on has its
// controllers in v1 hierarchies only, so the real v2 path cannot run there:
// the directory here is a plain one holding the interface files.
func TestLimiterV2Files(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"memory.max", "memory.swap.max", "memory.oom.group", "cpu.max", "pids.max"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("max\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lm := newLimiter(Tracking{Cgroup: dir}, needs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 200})
	if err := lm.apply(); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory.max": "268435456", "memory.swap.max": "0", "memory.oom.group": "1",
		"cpu.max": "50000 100000", "pids.max": "200"} {
		if got := readString(filepath.Join(dir, f)); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if lm.oomKilled() {
		t.Error("oomKilled without a memory.events")
	}
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n"), 0o644)
	if lm.oomKilled() {
		t.Error("oomKilled with oom_kill 0")
	}
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n"), 0o644)
	if !lm.oomKilled() {
		t.Error("not oomKilled with oom_kill 1")
	}
	os.WriteFile(filepath.Join(dir, "memory.current"), []byte("44040192\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pids.current"), []byte("3\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"), 0o644)
	if u := lm.usage(); u != (Usage{Memory: 44040192, CPUTime: 1500 * time.Millisecond, PIDs: 3}) {
		t.Errorf("usage = %+v", u)
	}

	// A limit whose controller the cgroup lacks fails, naming it.
	os.Remove(filepath.Join(dir, "pids.max"))
	if err := newLimiter(Tracking{Cgroup: dir}, needs.Limits{PIDs: 5}).apply(); err == nil || !strings.Contains(err.Error(), "no pids controller") {
		t.Errorf("apply without pids.max = %v, want an error naming the pids controller", err)
	}
}
