package spawn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/freeports"
	"berth/internal/mustrun"
)

// trackModes are the two ways a child is tracked; every test here runs on
// both. Each returns a fresh Tracking for one child.
var trackModes = []struct {
	name  string
	track func(t *testing.T) Tracking
}{
	{"cgroup", func(t *testing.T) Tracking { return Tracking{Cgroup: testCgroup(t)} }},
	{"pgroup", func(t *testing.T) Tracking { return Tracking{Marks: []string{"SPAWN_MARK=" + randomName(t)}} }},
}

func randomName(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	return name[:min(12, len(name))] + "-" + hex.EncodeToString(b[:])
}

// testCgroup returns a path for a child's cgroup under a parent made for
// the test in the cgroup v2 hierarchy; Cleanup removes both once empty.
// The test is skipped where no cgroup can be made.
func testCgroup(t *testing.T) string {
	t.Helper()
	mount, err := CgroupMount()
	if err != nil {
		mustrun.Skip(t, mustrun.Cgroups, "no cgroup v2 hierarchy: %v", err)
	}
	parent := filepath.Join(mount, "berth", "spawn-test-"+randomName(t))
	if err := MakeCgroup(parent); err != nil {
		mustrun.Skip(t, mustrun.Cgroups, "cannot make cgroups: %v", err)
	}
	dir := filepath.Join(parent, "child")
	t.Cleanup(func() {
		// Whatever a failed test left running goes first.
		Sweep(context.Background(), Tracking{Cgroup: dir}, 0, 0)
		syscall.Rmdir(dir)
		if err := syscall.Rmdir(parent); err != nil {
			t.Errorf("remove test cgroup %s: %v", parent, err)
		}
	})
	return dir
}

// trackedSpec is helperSpec with tr, whose marks go into the environment.
func trackedSpec(t *testing.T, tr Tracking, mode string, args ...string) Spec {
	spec := helperSpec(t, mode, args...)
	spec.Tracking = tr
	spec.Env = append(spec.Env, tr.Marks...)
	return spec
}

// killIfStarted kills pid at Cleanup if it still has its start time, for
// tests whose tracking failed to kill it.
func killIfStarted(t *testing.T, pid int) {
	if st, err := ProcStartTime(pid); err == nil {
		t.Cleanup(func() {
			if now, err := ProcStartTime(pid); err == nil && now == st {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
}

// TestStopReachesSetsidGrandchild: a grandchild that left the process
// group with setsid() and ignores SIGTERM is gone once Stop returns, on
// both paths: by its cgroup, or by the marks it inherited.
func TestStopReachesSetsidGrandchild(t *testing.T) {
	for _, m := range trackModes {
		t.Run(m.name, func(t *testing.T) {
			spec := trackedSpec(t, m.track(t), "fork-grandchild")
			spec.Env = append(spec.Env, "SPAWN_SETSID=1")
			c := startChild(t, spec)
			g := grandchildPID(t, spec)
			if sid, _ := unix.Getsid(g); sid != g {
				t.Fatalf("grandchild %d has session %d: it did not call setsid", g, sid)
			}
			if got := c.Stop(t.Context(), 100*time.Millisecond); got.Signal != "SIGTERM" {
				t.Errorf("leader exit %+v, want SIGTERM", got)
			}
			if alive(g) {
				t.Fatalf("setsid grandchild %d survived Stop", g)
			}
			if spec.Tracking.Cgroup != "" {
				if _, err := os.Stat(spec.Tracking.Cgroup); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the child's cgroup is still there after Stop: %v", err)
				}
			}
		})
	}
}

// grandchildPID reads the grandchild's pid from the child's log.
func grandchildPID(t *testing.T, spec Spec) int {
	t.Helper()
	waitForLog(t, spec, "grandchild=")
	b, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(b), "grandchild=")
	line, _, _ := strings.Cut(after, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("log %q: %v", b, err)
	}
	killIfStarted(t, pid)
	return pid
}

// freeAddr returns a loopback address whose port was free a moment ago and
// stays reserved for this test (outside the ephemeral range, which another
// test run at the same time could be given it from).
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeports.Port(t)))
}

// TestDoneOnlyWhenEmpty: after kill -9 of a child whose grandchild holds a
// port, Done is closed only once the grandchild is gone and the port is
// free again, so a master that releases the port on Done never sees it
// held (and quarantined) by the dying grandchild. On both paths, with the
// grandchild in the group and with one that left it.
func TestDoneOnlyWhenEmpty(t *testing.T) {
	for _, m := range trackModes {
		for _, setsid := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/setsid=%v", m.name, setsid), func(t *testing.T) {
				spec := trackedSpec(t, m.track(t), "fork-grandchild")
				addr := freeAddr(t)
				spec.Env = append(spec.Env, "SPAWN_LISTEN="+addr, "SPAWN_SETSID="+map[bool]string{true: "1"}[setsid])
				c := startChild(t, spec)
				g := grandchildPID(t, spec)
				if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
					t.Fatalf("the grandchild does not hold %s: %v", addr, err)
				} else {
					c.Close()
				}
				syscall.Kill(c.PID(), syscall.SIGKILL) // the leader only, as kill -9 does
				if got := waitDone(t, c); got.Signal != "SIGKILL" {
					t.Errorf("exit %+v, want SIGKILL", got)
				}
				if alive(g) {
					t.Fatalf("Done was closed while grandchild %d still ran", g)
				}
				l, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("Done was closed while %s was still held: %v", addr, err)
				}
				l.Close()
			})
		}
	}
}

// TestStartInCgroup: the command runs in its cgroup from its first
// instruction on, with clone3 and with the fallback for kernels that
// refuse it (the shell that waits until its pid is in cgroup.procs), and
// with socket activation on top; argv, environment and exit code are the
// command's own.
func TestStartInCgroup(t *testing.T) {
	for _, clone3 := range []bool{true, false} {
		for _, listen := range []bool{false, true} {
			t.Run(fmt.Sprintf("clone3=%v/listenpid=%v", clone3, listen), func(t *testing.T) {
				cloneIntoCgroup.Store(clone3)
				t.Cleanup(func() { cloneIntoCgroup.Store(true) })
				dir := testCgroup(t)
				spec := trackedSpec(t, Tracking{Cgroup: dir}, "print-cgroup", "x y")
				spec.ListenPID = listen
				c := startChild(t, spec)
				if got := waitDone(t, c); got != (Exit{}) {
					t.Fatalf("exit %+v, want 0", got)
				}
				b, _ := os.ReadFile(spec.LogPath)
				mount, _ := CgroupMount()
				want := "0::" + strings.TrimPrefix(dir, mount) + "\n"
				if !strings.Contains(string(b), "\n"+want) && !strings.HasPrefix(string(b), "cgroup="+want) {
					t.Errorf("output %q, want the line %q", b, want)
				}
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup %s left after the child exited: %v", dir, err)
				}
				if c.Tracking() != "cgroup "+dir {
					t.Errorf("Tracking() = %q", c.Tracking())
				}
			})
		}
	}
	t.Run("fallback keeps argv and env", func(t *testing.T) {
		cloneIntoCgroup.Store(false)
		t.Cleanup(func() { cloneIntoCgroup.Store(true) })
		spec := trackedSpec(t, Tracking{Cgroup: testCgroup(t)}, "print-env", "a b", "", "$HOME")
		c := startChild(t, spec)
		if got := waitDone(t, c); got != (Exit{}) {
			t.Fatalf("exit %+v, want 0", got)
		}
		b, _ := os.ReadFile(spec.LogPath)
		var args, env []string
		for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			if a, ok := strings.CutPrefix(line, "arg="); ok {
				args = append(args, a)
			}
			if e, ok := strings.CutPrefix(line, "env="); ok {
				env = append(env, e)
			}
		}
		if want := spec.Command[1:]; !slices.Equal(args, want) {
			t.Errorf("args %q, want %q", args, want)
		}
		slices.Sort(env)
		want := slices.Sorted(slices.Values(spec.Env))
		if !slices.Equal(env, want) {
			t.Errorf("environment %q, want %q", env, want)
		}
	})
}

// TestStartInPopulatedCgroup: a cgroup that still holds processes is not
// reused for another child.
func TestStartInPopulatedCgroup(t *testing.T) {
	dir := testCgroup(t)
	first := startChild(t, trackedSpec(t, Tracking{Cgroup: dir}, "sleep-forever"))
	_, err := Start(t.Context(), nil, trackedSpec(t, Tracking{Cgroup: dir}, "sleep-forever"))
	if !errors.Is(err, ErrCgroupInUse) {
		t.Errorf("second Start in %s: %v, want ErrCgroupInUse", dir, err)
	}
	first.Stop(t.Context(), 0)
}

// TestAdoptTracked: an adopted child is stopped with everything it
// started, setsid grandchildren included, on both paths; with a cgroup a
// pid that is not in it is not adopted.
func TestAdoptTracked(t *testing.T) {
	for _, m := range trackModes {
		t.Run(m.name, func(t *testing.T) {
			tr := m.track(t)
			spec := trackedSpec(t, tr, "fork-grandchild")
			spec.Env = append(spec.Env, "SPAWN_SETSID=1")
			c := startChild(t, spec)
			g := grandchildPID(t, spec)
			if tr.Cgroup != "" {
				other := Tracking{Cgroup: testCgroup(t)}
				if err := MakeCgroup(other.Cgroup); err != nil {
					t.Fatal(err)
				}
				if _, err := Adopt(c.PID(), c.StartTime(), other); !errors.Is(err, ErrPIDReused) {
					t.Errorf("Adopt with a cgroup the pid is not in: %v, want ErrPIDReused", err)
				}
			}
			a, err := Adopt(c.PID(), c.StartTime(), tr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Release)
			if want := "process group " + strconv.Itoa(c.PID()); tr.Cgroup == "" && a.Tracking() != want {
				t.Errorf("Tracking() = %q, want %q", a.Tracking(), want)
			}
			a.Stop(t.Context(), 100*time.Millisecond)
			if alive(g) {
				t.Fatalf("setsid grandchild %d survived the adopted child's Stop", g)
			}
			waitDone(t, c)
		})
	}
}

// TestSweep: what is left of a child nobody watches is stopped: by its
// cgroup, or by its marks. Without a cgroup a process in the same process
// group that does not carry the marks (a stranger that got the recorded
// group id) is left alone.
func TestSweep(t *testing.T) {
	for _, m := range trackModes {
		t.Run(m.name, func(t *testing.T) {
			tr := m.track(t)
			script := `trap "" TERM; sleep 600 & echo $!; env -u SPAWN_MARK sleep 600 & echo $!; wait`
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tr.Marks...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if tr.Cgroup != "" {
				if err := MakeCgroup(tr.Cgroup); err != nil {
					t.Fatal(err)
				}
				fd, err := syscall.Open(tr.Cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer syscall.Close(fd)
				cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			leader := cmd.Process.Pid
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			t.Cleanup(func() { syscall.Kill(-leader, syscall.SIGKILL); <-exited })
			var kids [2]int
			if _, err := fmt.Fscan(out, &kids[0], &kids[1]); err != nil {
				t.Fatal(err)
			}
			marked, stranger := kids[0], kids[1]
			killIfStarted(t, stranger)
			// Until env has exec'd sleep, the stranger still carries the
			// marks and is rightly the child's.
			if tr.Cgroup == "" {
				waitMarks(t, stranger, tr.Marks, marksAbsent)
			}
			start, _ := ProcStartTime(leader)

			began := time.Now()
			if err := Sweep(t.Context(), tr, start, 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			t.Logf("swept in %v", time.Since(began))
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Fatal("the leader survived Sweep")
			}
			if alive(marked) {
				t.Errorf("marked sleeper %d survived Sweep", marked)
			}
			if tr.Cgroup != "" {
				if alive(stranger) {
					t.Errorf("sleeper %d in the cgroup survived Sweep", stranger)
				}
				if _, err := os.Stat(tr.Cgroup); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup still there after Sweep: %v", err)
				}
			} else if !alive(stranger) {
				t.Errorf("unmarked process %d in the recorded group was killed", stranger)
			}
		})
	}
}

// waitMarks polls until readMarks(pid, marks) says want.
func waitMarks(t *testing.T, pid int, marks []string, want markState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for readMarks(pid, marks) != want {
		if time.Now().After(deadline) {
			t.Fatalf("process %d: marks %d, want %d", pid, readMarks(pid, marks), want)
		}
		time.Sleep(5 * time.Millisecond) // polling /proc, bounded by the deadline
	}
}

// TestExecDropsMarks: a process found with the marks that then execs with
// an environment without them (env -u) is no longer the child's. It used
// to stay a member for good: never signalled (its marks are gone) yet
// waited for, so a sweep hung until it ended by itself (CI: TestSweep/pgroup
// took 10 minutes, then its sleep 600 ended).
func TestExecDropsMarks(t *testing.T) {
	mark := "SPAWN_MARK=exec-drops"
	cmd := exec.Command("sh", "-c", `read x; exec env -u SPAWN_MARK sleep 600`)
	cmd.Env = []string{"PATH=/usr/bin:/bin", mark}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	g := &groupTracker{marks: []string{mark}}
	has := func() bool {
		return slices.ContainsFunc(g.members(false), func(m member) bool { return m.pid == pid })
	}
	waitMarks(t, pid, g.marks, marksHeld)
	if !has() {
		t.Fatal("the marked shell is not a member")
	}
	in.Close()
	waitMarks(t, pid, g.marks, marksAbsent)
	if has() {
		t.Error("still a member after exec'ing without the marks")
	}
}

// TestCgroup2Mounts: read-write cgroup2 mounts are found in mountinfo,
// with octal escapes undone; cgroup v1 and read-only mounts are not.
func TestCgroup2Mounts(t *testing.T) {
	info := `25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
28 30 0:25 / /mnt/ro\040cg ro,relatime - cgroup2 cgroup2 ro
29 30 0:26 / /mnt/my\040cg rw,relatime - cgroup2 cgroup2 rw
`
	got := cgroup2Mounts([]byte(info))
	if want := []string{"/sys/fs/cgroup/unified", "/mnt/my cg"}; !slices.Equal(got, want) {
		t.Errorf("cgroup2Mounts = %q, want %q", got, want)
	}
}
