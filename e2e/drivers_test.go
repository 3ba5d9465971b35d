package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/pipes"
)

// drivers lists the master's drivers through `master drivers --json`.
func (m *masterEnv) drivers(t *testing.T) map[string]pipes.DriverInfo {
	t.Helper()
	out, err := exec.Command(bin.master, "drivers", "--json", "--config", m.config).Output()
	if err != nil {
		t.Fatalf("master drivers: %v", err)
	}
	var list []pipes.DriverInfo
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("master drivers output %q: %v", out, err)
	}
	byName := map[string]pipes.DriverInfo{}
	for _, d := range list {
		byName[d.Name] = d
	}
	return byName
}

// TestDriverAcrossMasterCrash: with the real binaries and the example
// driver in the plugins directory, a need with --driver rawexec runs its
// children under the driver process. The master is killed with SIGKILL:
// the driver and the children live on, and the next master re-attaches
// to the same driver process (over the persisted mutual TLS) and, through
// it, to both children, with no restart. The driver is then killed with
// SIGKILL: the master restarts it and keeps both children.
func TestDriverAcrossMasterCrash(t *testing.T) {
	plugins := t.TempDir()
	b, err := os.ReadFile(bin.rawexec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, "berth-driver-rawexec"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killByExe(filepath.Join(plugins, "berth-driver-rawexec")) }) // after the master's
	l := startLan(t, "")
	base := freeports.Block(t, 3*4)
	m := startMasterWith(t, l, "m1", base, base+4, 4, masterOpts{extra: map[string]any{"pluginsdirectory": plugins}})
	d := m.drivers(t)["rawexec"]
	if !d.Available || d.Version != "1.0.0" || d.PID == 0 {
		t.Fatalf("master drivers: rawexec %+v", d)
	}
	if out := l.mustCLI(t, "master", "ls"); !strings.Contains(out, "m1 driver rawexec 1.0.0") {
		t.Fatalf("master ls does not show the driver:\n%s", out)
	}
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--driver", "rawexec", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(l.running(t, "web")) == 2 })
	if out := l.mustCLI(t, "need", "show", "web"); !strings.Contains(out, "driver:     rawexec") {
		t.Fatalf("need show does not name the driver:\n%s", out)
	}
	before := l.running(t, "web")
	for name, s := range before {
		if p := parentOf(s.PID); p != d.PID {
			t.Fatalf("%s (pid %d) has parent %d, want the driver %d", name, s.PID, p, d.PID)
		}
	}

	m.kill9()
	if !alive(d.PID) {
		t.Fatal("the driver died with its master")
	}
	m.restart(t, l)
	waitFor(t, 20*time.Second, "the master to list both children again", func() bool { return len(m.ps(t)) == 2 })
	if got := m.drivers(t)["rawexec"]; got.PID != d.PID || !got.Available {
		t.Fatalf("after the master's crash the driver is %+v, want the same process %d re-attached", got, d.PID)
	}
	same := func() {
		t.Helper()
		after := l.running(t, "web")
		for name, s := range before {
			if a := after[name]; a == nil || a.PID != s.PID || a.Alloc != s.Alloc {
				t.Fatalf("%s: was pid %d alloc %s, now %+v", name, s.PID, s.Alloc, a)
			}
		}
		for _, in := range l.need(t, "web").InstanceList {
			if in.Restarts != 0 {
				t.Fatalf("%s restarted %d times", in.Name, in.Restarts)
			}
		}
	}
	same()

	syscall.Kill(d.PID, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "the driver to be restarted", func() bool {
		got := m.drivers(t)["rawexec"]
		return got.Available && got.PID != 0 && got.PID != d.PID && got.Restarts == 1
	})
	same()

	l.mustCLI(t, "need", "scale", "web", "0")
	waitFor(t, 30*time.Second, "the children to stop", func() bool { return len(m.ps(t)) == 0 })
	for name, s := range before {
		if alive(s.PID) {
			t.Errorf("%s (pid %d) still runs after scale 0", name, s.PID)
		}
	}
}

// parentOf is the parent pid of pid, or -1.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return -1
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return n
}
