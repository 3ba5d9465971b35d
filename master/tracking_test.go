package master_test

import (
	"bytes"
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

	"berth/internal/mustrun"
	"berth/lan"
	"berth/master"
	"berth/needs"
	"berth/pipes"
)

// trackings are the two ways a master tracks its children (the config key
// "tracking"); the tests of issue 7's repros run on both. "auto" picks
// cgroups on a machine with a writable cgroup v2 hierarchy.
var trackings = []struct{ name, mode, want string }{
	{"cgroup", master.TrackCgroup, "cgroup "},
	{"pgroup", master.TrackProcessGroup, "process group "},
}

// forEachTracking runs body once per tracking, with a lanmanager and a
// master that tracks that way (its runtime check every 100 ms).
func forEachTracking(t *testing.T, body func(t *testing.T, c *lan.Client, a *master.Agent, cfg master.Config, want string)) {
	for _, tr := range trackings {
		t.Run(tr.name, func(t *testing.T) {
			if tr.mode == master.TrackCgroup && !cgroupsWork() {
				mustrun.Skip(t, mustrun.Cgroups, "no writable cgroup v2 hierarchy on this machine")
			}
			_, c := newLan(t)
			cfg := testConfig(t, "")
			cfg.LanManagerAddress = c.Addr
			cfg.Tracking = tr.mode
			a := openAgentWith(t, cfg)
			waitFor(t, 10*time.Second, "the master to link", a.Linked)
			body(t, c, a, cfg, tr.want)
		})
	}
}

func cgroupsWork() bool {
	_, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs")
	if err != nil {
		_, err = os.Stat("/sys/fs/cgroup/cgroup.procs")
	}
	return err == nil && os.Geteuid() == 0
}

// openAgentWith opens a master on cfg whose runtime check runs every
// 100 ms; Cleanup closes it.
func openAgentWith(t *testing.T, cfg master.Config) *master.Agent {
	t.Helper()
	a, err := master.Open(t.Context(), master.Options{Config: cfg, Logger: testLogger(t), StopGrace: 2 * time.Second, Environ: os.Environ(),
		RuntimeCheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// readPID waits for a pid written to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 20*time.Second, "a pid in "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	killAtCleanup(t, pid)
	return pid
}

// killAtCleanup kills pid when the test ends if it still runs with the
// start time it has now (a test that failed left it).
func killAtCleanup(t *testing.T, pid int) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return
	}
	start := statStart(st)
	t.Cleanup(func() {
		if now, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && statStart(now) == start {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func statStart(b []byte) string {
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// TestSetsidGrandchildStopped (issue 7 §3, first repro): a grandchild that
// calls setsid() and ignores SIGTERM escapes the child's process group;
// `need rm` must still leave nothing running. ps says how the child is
// tracked.
func TestSetsidGrandchildStopped(t *testing.T) {
	forEachTracking(t, func(t *testing.T, c *lan.Client, a *master.Agent, cfg master.Config, want string) {
		pidFile := filepath.Join(t.TempDir(), "daemon.pid")
		script := fmt.Sprintf(`setsid sh -c 'trap "" TERM; echo $$ > %s; exec sleep 1000' & wait`, pidFile)
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "daemon", Command: []string{"sh", "-c", script}}); err != nil {
			t.Fatal(err)
		}
		daemon := readPID(t, pidFile)
		waitFor(t, 20*time.Second, "the instance to run", func() bool { return running(t, c, "daemon") == 1 })
		kids := a.Children()
		if len(kids) != 1 {
			t.Fatalf("children %+v, want 1", kids)
		}
		if sid, _ := syscall.Getpgid(daemon); sid != daemon {
			t.Fatalf("the daemon %d is in group %d: it did not leave the child's group", daemon, sid)
		}
		ps := controlPS(t, cfg.RuntimeDirectory)
		if len(ps) != 1 || !strings.HasPrefix(ps[0].Tracking, want) {
			t.Errorf("ps %+v, want tracking %q...", ps, want)
		}
		if err := c.RemoveNeed(t.Context(), "daemon"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the master to forget the child", func() bool { return len(a.Children()) == 0 })
		if alive(daemon) {
			t.Fatalf("the setsid grandchild %d survived need rm", daemon)
		}
	})
}

// TestPortKeptAfterKill9 (issue 7 §3, second repro): after kill -9 of a
// child whose grandchild holds its port, the lease is released only once
// the grandchild is gone too, so the port is not quarantined and the
// instance comes back on the same port.
func TestPortKeptAfterKill9(t *testing.T) {
	forEachTracking(t, func(t *testing.T, c *lan.Client, a *master.Agent, cfg master.Config, want string) {
		exe, _ := os.Executable()
		one := 1
		// The grandchild is this test binary: it binds the port and says
		// ready on the pipe; the child is the shell that waits for it.
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"sh", "-c", `"$0" & wait`, exe},
			Instances: &one, Protocols: []needs.Protocol{needs.HTTP}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "web running and ready", func() bool {
			k := a.Children()
			return running(t, c, "web") == 1 && len(k) == 1 && k[0].Ready
		})
		old := a.Children()[0]
		port := old.Ports[needs.HTTP]
		if !dialable(port) {
			t.Fatalf("nothing listens on the instance's port %d", port)
		}
		syscall.Kill(old.PID, syscall.SIGKILL) // the shell only
		waitFor(t, 30*time.Second, "web running again as a new child", func() bool {
			k := a.Children()
			return running(t, c, "web") == 1 && len(k) == 1 && k[0].Alloc != old.Alloc && k[0].PID != 0
		})
		now := a.Children()[0]
		if got := now.Ports[needs.HTTP]; got != port {
			t.Errorf("the instance came back on port %d, was %d: the old port was released while the grandchild still held it", got, port)
		}
		if q := a.Office().Quarantined(); len(q) != 0 {
			t.Errorf("ports quarantined: %+v", q)
		}
	})
}

func dialable(port int) bool {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// TestReusedPGIDStrangerSurvives (issue 7 §3, third repro): after a master
// crash, the child's group dies and the kernel gives its pid to an
// unrelated process that calls setsid() (so its group id is the recorded
// one), forks and exits. The restarted master must leave the stranger's
// child alone. The pid is reused for real, through ns_last_pid.
func TestReusedPGIDStrangerSurvives(t *testing.T) {
	if _, err := os.Stat("/proc/sys/kernel/ns_last_pid"); err != nil || os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "needs root and /proc/sys/kernel/ns_last_pid to reuse a pid")
	}
	forEachTracking(t, func(t *testing.T, c *lan.Client, a *master.Agent, cfg master.Config, want string) {
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{"sleep", "1000"}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "svc running", func() bool { return running(t, c, "svc") == 1 && len(a.Children()) == 1 })
		pgid := a.Children()[0].PID
		if err := a.Leave(); err != nil { // as a crash would: the child runs on, recorded
			t.Fatal(err)
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		// This process started the child, so it reaps it; wait until the
		// pid is free.
		waitFor(t, 10*time.Second, "the child's pid to be free", func() bool { return syscall.Kill(pgid, 0) != nil })
		sleeper := strangerWithGroup(t, pgid)

		b := openAgentWith(t, cfg)
		waitFor(t, 10*time.Second, "the master to link again", b.Linked)
		waitFor(t, 30*time.Second, "svc running again", func() bool { return running(t, c, "svc") == 1 && len(b.Children()) == 1 })
		if !alive(sleeper) {
			t.Fatalf("the stranger's child %d in the reused group %d was killed", sleeper, pgid)
		}
		b.Close()
		if !alive(sleeper) {
			t.Fatalf("the stranger's child %d in the reused group %d was killed by Close", sleeper, pgid)
		}
	})
}

// strangerWithGroup makes an unrelated process take pid (via ns_last_pid;
// other processes of the machine may take it first, so it tries again),
// call setsid() so its group id is pid, fork a sleeper into that group,
// and exit. It returns the sleeper, killed at Cleanup.
func strangerWithGroup(t *testing.T, pid int) int {
	t.Helper()
	for try := 0; try < 500; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			mustrun.Skip(t, mustrun.Root, "cannot set ns_last_pid: %v", err)
		}
		cmd := exec.Command("setsid", "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!")
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got := cmd.Process.Pid
		cmd.Wait()
		sleeper, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("stranger printed %q", out.String())
		}
		killAtCleanup(t, sleeper)
		if got != pid {
			syscall.Kill(sleeper, syscall.SIGKILL)
			continue
		}
		if pg, _ := syscall.Getpgid(sleeper); pg != pid {
			t.Fatalf("the stranger's sleeper is in group %d, want %d", pg, pid)
		}
		t.Logf("pid %d reused after %d tries; the stranger's sleeper %d is in group %d", pid, try+1, sleeper, pid)
		return sleeper
	}
	t.Fatalf("could not get pid %d again in 500 tries", pid)
	return 0
}

// environ returns the environment of pid as "K=V" strings.
func environ(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// marked returns the live processes whose environment holds kv.
func marked(kv string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		if slices.Contains(environ(pid), kv) {
			out = append(out, pid)
		}
	}
	return out
}

// TestRuntimeDirDeleted (issue 7 §4, first bullet): the runtime directory
// is deleted while the master runs three children. The master recreates
// what it needs (same id, control socket, the children's sockets), so
// new instances still start; after a restart, which finds empty databases
// (the deleted ones were lost with the master), the earlier children are
// found by the master's cgroup or BERTH_MASTER and stopped, so as many
// processes run as instances, and none twice.
func TestRuntimeDirDeleted(t *testing.T) {
	forEachTracking(t, func(t *testing.T, c *lan.Client, a *master.Agent, cfg master.Config, want string) {
		rt := cfg.RuntimeDirectory
		// Every process of the need carries mark, whatever the master adds.
		mark := "TEST_MARK=" + filepath.Base(filepath.Dir(rt))
		exe, _ := os.Executable()
		n := 3
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{exe}, Instances: &n,
			Protocols: []needs.Protocol{needs.HTTP}, Env: map[string]string{"TEST_MARK": filepath.Base(filepath.Dir(rt))}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "3 running", func() bool { return running(t, c, "svc") == 3 && len(a.Children()) == 3 })
		first := a.Children()
		id := readID(t, rt)

		if err := os.RemoveAll(rt); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "master.id, the control socket and the children's sockets to be back", func() bool {
			b, err := os.ReadFile(filepath.Join(rt, "master.id"))
			if err != nil || strings.TrimSpace(string(b)) != id {
				return false
			}
			for _, k := range first {
				if _, err := os.Stat(k.Pipe); err != nil {
					return false
				}
			}
			sock, err := master.ControlSocket(rt)
			if err != nil {
				return false
			}
			conn, err := pipes.Dial(t.Context(), sock)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		})
		if got := len(controlPS(t, rt)); got != 3 {
			t.Errorf("ps through the new control socket lists %d children, want 3", got)
		}
		if _, err := c.Scale(t.Context(), "svc", 6); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "6 running after the deletion", func() bool { return running(t, c, "svc") == 6 && len(a.Children()) == 6 })
		if got := marked(mark); len(got) != 6 {
			t.Errorf("%d processes carry %s, want 6", len(got), mark)
		}
		old := a.Children()

		// The master goes away as a crash would: nothing written, children
		// left running. The databases it used were deleted: they go with it.
		if err := a.Leave(); err != nil {
			t.Fatal(err)
		}
		b := openAgentWith(t, cfg)
		if b.ID() != id {
			t.Errorf("restarted master has id %s, want %s (master.id was recreated)", b.ID(), id)
		}
		waitFor(t, 10*time.Second, "the master to link again", b.Linked)
		for _, k := range old {
			if alive(k.PID) {
				t.Errorf("%s (pid %d), which no record names any more, still runs after the restart", k.Instance, k.PID)
			}
		}
		waitFor(t, 30*time.Second, "6 running again", func() bool { return running(t, c, "svc") == 6 && len(b.Children()) == 6 })
		waitFor(t, 10*time.Second, "as many processes as instances", func() bool { return len(marked(mark)) == 6 })
	})
}

// TestRuntimeDirDeletedThenCrash: the runtime directory is deleted and the
// master dies before its check could recreate master.id, so it comes back
// with a new id and empty databases. Its cgroup (named after the
// directory's path, not the id) or its children's BERTH_MASTER still find
// the earlier children: they are stopped, and as many processes run as
// instances once the lanmanager has placed them again.
func TestRuntimeDirDeletedThenCrash(t *testing.T) {
	forEachTracking(t, func(t *testing.T, c *lan.Client, a *master.Agent, cfg master.Config, want string) {
		rt := cfg.RuntimeDirectory
		tag := filepath.Base(filepath.Dir(rt))
		exe, _ := os.Executable()
		n := 3
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{exe}, Instances: &n,
			Protocols: []needs.Protocol{needs.HTTP}, Env: map[string]string{"TEST_MARK": tag}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "3 running", func() bool { return running(t, c, "svc") == 3 && len(a.Children()) == 3 })
		old := a.Children()
		id := readID(t, rt)
		if err := os.RemoveAll(rt); err != nil {
			t.Fatal(err)
		}
		if err := a.Leave(); err != nil { // at once: no check has run
			t.Fatal(err)
		}
		if err := os.RemoveAll(rt); err != nil { // whatever the check may have made meanwhile
			t.Fatal(err)
		}
		b := openAgentWith(t, cfg)
		if b.ID() == id {
			t.Fatalf("the master kept id %s though master.id was gone", id)
		}
		for _, k := range old {
			if alive(k.PID) {
				t.Errorf("%s (pid %d) of the previous run still runs after the restart", k.Instance, k.PID)
			}
		}
		waitFor(t, 60*time.Second, "3 running again", func() bool { return running(t, c, "svc") == 3 && len(b.Children()) == 3 })
		waitFor(t, 10*time.Second, "as many processes as instances", func() bool { return len(marked("TEST_MARK="+tag)) == 3 })
	})
}

// TestConfigTracking: the tracking key takes auto, cgroup or processgroup
// ("" is auto); anything else is an error that names the key.
func TestConfigTracking(t *testing.T) {
	for _, v := range []string{"", "auto", "cgroup", "processgroup"} {
		if _, err := master.ParseConfig([]byte(`{"tracking": "` + v + `"}`)); err != nil {
			t.Errorf("tracking %q: %v", v, err)
		}
	}
	_, err := master.ParseConfig([]byte(`{"tracking": "pids"}`))
	if err == nil || !strings.Contains(err.Error(), "tracking") || !strings.Contains(err.Error(), `"pids"`) {
		t.Errorf("tracking \"pids\": %v, want an error naming the key and the value", err)
	}
}

// TestRuntimeDirDeletedLongPath: with a runtime directory too long for
// socket paths, the sockets live in a directory under the temp directory,
// recorded in <runtime>/sockdir. Deleting the runtime directory deletes the
// record; the runtime check writes it again, so `master ps` finds the
// control socket.
func TestRuntimeDirDeletedLongPath(t *testing.T) {
	_, c := newLan(t)
	cfg := testConfig(t, c.Addr)
	cfg.RuntimeDirectory = filepath.Join(cfg.RuntimeDirectory, strings.Repeat("long-runtime-directory-", 4))
	a := openAgentWith(t, cfg)
	waitFor(t, 10*time.Second, "the master to link", a.Linked)
	before, err := master.ControlSocket(cfg.RuntimeDirectory)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(before, cfg.RuntimeDirectory) {
		t.Fatalf("control socket %s is under the runtime directory: the path is not long enough for this test", before)
	}
	if err := os.RemoveAll(cfg.RuntimeDirectory); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "master ps to find the control socket again", func() bool {
		sock, err := master.ControlSocket(cfg.RuntimeDirectory)
		if err != nil || sock != before {
			return false
		}
		conn, err := pipes.Dial(t.Context(), sock)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}
