package master_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth/internal/mustrun"
	"berth/lan"
	"berth/master"
	"berth/needs"
	"berth/pipes"
)

var (
	rawexecOnce sync.Once
	rawexecBin  string
	rawexecErr  error
)

// pluginsDir returns a plugins directory holding the example rawexec
// driver (built once per test binary), a file that is not executable
// and one that others may write: both skipped by the master.
func pluginsDir(t *testing.T) string {
	t.Helper()
	rawexecOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rawexec")
		if err != nil {
			rawexecErr = err
			return
		}
		rawexecBin = filepath.Join(dir, "berth-driver-rawexec")
		if out, err := exec.Command("go", "build", "-o", rawexecBin, "berth/examples/driver-rawexec").CombinedOutput(); err != nil {
			rawexecErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if rawexecErr != nil {
		t.Fatal(rawexecErr)
	}
	dir := t.TempDir()
	b, err := os.ReadFile(rawexecBin)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"berth-driver-rawexec": 0o755, "berth-driver-notexec": 0o644,
		"berth-driver-shared": 0o777, "berth-driver-exec": 0o755, "README": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, name), mode) // past the umask
	}
	return dir
}

func openDriverAgent(t *testing.T, cfg master.Config) *master.Agent {
	t.Helper()
	a, err := master.Open(t.Context(), master.Options{Config: cfg, Logger: testLogger(t), StopGrace: 2 * time.Second,
		Environ: os.Environ(), DriverPingInterval: 100 * time.Millisecond, DriverPingTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// controlDrivers asks the master's control socket for its drivers.
func controlDrivers(t *testing.T, runtimeDir string) []pipes.DriverInfo {
	t.Helper()
	return askControl[[]pipes.DriverInfo](t, runtimeDir, pipes.TypeDrivers)
}

func driverInfo(a *master.Agent, name string) (pipes.DriverInfo, bool) {
	for _, d := range a.Drivers() {
		if d.Name == name {
			return d, true
		}
	}
	return pipes.DriverInfo{}, false
}

// ppid is the parent pid of pid.
func ppid(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, _ := strconv.Atoi(f[1])
	return n
}

// pidsOf returns the lanmanager's pid of each running instance of need.
func pidsOf(t *testing.T, c *lan.Client, need string) map[string]int {
	out := map[string]int{}
	for name, in := range services(t, c, need) {
		if in.State == needs.Running {
			out[name] = in.PID
		}
	}
	return out
}

// TestExternalDriverFaults: a need with --driver rawexec runs through the
// example driver process; a need naming a driver no master has stays
// pending with the reason; the driver process killed with SIGKILL, then
// stopped with SIGSTOP, is restarted each time without the master going
// down, and its children are neither lost nor started twice.
func TestExternalDriverFaults(t *testing.T) {
	srv, c := newLan(t)
	cfg := testConfig(t, srv.Addr())
	cfg.PluginsDirectory = pluginsDir(t)
	a := openDriverAgent(t, cfg)
	waitFor(t, 10*time.Second, "the master to link", a.Linked)

	ds := controlDrivers(t, cfg.RuntimeDirectory) // what master drivers shows
	if len(ds) != 2 || ds[0].Name != "exec" || !ds[0].Builtin || ds[1].Name != "rawexec" || !ds[1].Available || ds[1].Version != "1.0.0" ||
		ds[1].PID == 0 || !ds[1].Signals {
		t.Fatalf("drivers %+v, want exec and rawexec only (the others are skipped)", ds)
	}
	// Linked says the master sent its hello; the lanmanager registers it
	// once it has read it.
	var ms []*needs.Master
	var err error
	waitFor(t, 10*time.Second, "the lanmanager to list the master", func() bool {
		ms, err = c.Masters(t.Context())
		return err == nil && len(ms) == 1
	})
	if len(ms[0].Drivers) != 2 || ms[0].Drivers[1].String() != "rawexec 1.0.0" {
		t.Fatalf("lanmanager's masters %+v; want the drivers of the hello", ms)
	}

	exe, _ := os.Executable()
	n := 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "plug", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.HTTP}, Driver: "rawexec"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "2 plug running", func() bool { return running(t, c, "plug") == 2 })
	drv := a.Drivers()[1].PID
	before := pidsOf(t, c, "plug")
	for name, pid := range before {
		if p := ppid(t, pid); p != drv {
			t.Fatalf("%s (pid %d) has parent %d, want the driver process %d", name, pid, p, drv)
		}
	}
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "nodrv", Command: []string{exe}, Instances: &one, Driver: "nosuch"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the reason nodrv is pending", func() bool {
		st, err := c.Need(t.Context(), "nodrv")
		return err == nil && len(st.Reasons) > 0 && strings.Contains(strings.Join(st.Reasons, ";"), `no driver "nosuch" on master m1`)
	})
	// exec takes no driver options.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "opts", Command: []string{exe}, Instances: &one, DriverOpts: []string{"a=b"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the reason opts is pending", func() bool {
		st, err := c.Need(t.Context(), "opts")
		return err == nil && strings.Contains(strings.Join(st.Reasons, ";"), "driver exec takes no options")
	})

	// rawexec enforces no limits: a need with limits is not bid for.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "capped", Command: []string{exe}, Instances: &one, Driver: "rawexec",
		Limits: &needs.Limits{Memory: 64 << 20}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the reason capped is pending", func() bool {
		st, err := c.Need(t.Context(), "capped")
		return err == nil && strings.Contains(strings.Join(st.Reasons, ";"), "driver rawexec enforces no resource limits")
	})

	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		old := a.Drivers()[1].PID
		if err := syscall.Kill(old, sig); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the driver to be restarted after "+sig.String(), func() bool {
			d, _ := driverInfo(a, "rawexec")
			return d.Available && d.PID != 0 && d.PID != old && d.Restarts == i+1
		})
		for name, pid := range before {
			if !alive(pid) {
				t.Fatalf("after %s of the driver, %s (pid %d) died", sig, name, pid)
			}
		}
		if got := pidsOf(t, c, "plug"); len(got) != 2 || got["plug.0"] != before["plug.0"] || got["plug.1"] != before["plug.1"] {
			t.Fatalf("after %s of the driver the lanmanager has %v, want %v", sig, got, before)
		}
		if len(a.Children()) != 2 {
			t.Fatalf("children %+v", a.Children())
		}
	}
	// A child killed now is reported once (through the re-attached driver)
	// and started again, through the driver.
	victim := before["plug.0"]
	syscall.Kill(victim, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "plug.0 to run again", func() bool {
		got := pidsOf(t, c, "plug")
		return len(got) == 2 && got["plug.0"] != 0 && got["plug.0"] != victim
	})
	st, err := c.Need(t.Context(), "plug")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range st.InstanceList {
		if in.Name == "plug.0" && in.Restarts != 1 {
			t.Errorf("plug.0 restarts %d, want 1", in.Restarts)
		}
		if in.Name == "plug.1" && in.Restarts != 0 {
			t.Errorf("plug.1 restarts %d, want 0", in.Restarts)
		}
	}
	if p := ppid(t, pidsOf(t, c, "plug")["plug.0"]); p != a.Drivers()[1].PID {
		t.Errorf("the restarted plug.0 has parent %d, want the driver %d", p, a.Drivers()[1].PID)
	}
}

// TestExternalDriverMasterRestart: a master that leaves and a new one on
// the same runtime directory re-attach to the same driver process and,
// through it, to the children; stopping them afterwards works, and Close
// ends the driver process.
func TestExternalDriverMasterRestart(t *testing.T) {
	c, cfg, a := plugRunning(t)
	before := byAlloc(a.Children())
	drv := a.Drivers()[1].PID
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	if !alive(drv) {
		t.Fatal("the driver process did not survive Leave")
	}
	b := openDriverAgent(t, cfg)
	if d, _ := driverInfo(b, "rawexec"); d.PID != drv || !d.Available {
		t.Fatalf("after the restart the driver is %+v, want the same process %d", d, drv)
	}
	after := byAlloc(b.Children())
	if len(after) != 2 {
		t.Fatalf("re-attached children %+v", after)
	}
	for alloc, k := range before {
		if got := after[alloc]; got.PID != k.PID || !got.Adopted || got.Driver != "rawexec" || k.Driver != "rawexec" {
			t.Fatalf("child %s: %+v, was %+v", k.Instance, got, k)
		}
	}
	waitFor(t, 10*time.Second, "the master to link again", b.Linked)
	zero := 0
	if _, err := c.Scale(t.Context(), "plug", zero); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the children to stop", func() bool { return len(b.Children()) == 0 })
	for _, k := range before {
		if alive(k.PID) {
			t.Fatalf("%s (pid %d) still runs", k.Instance, k.PID)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the driver process to end after Close", func() bool { return !alive(drv) })
}

// TestExternalDriverGoneWhileMasterDown: the driver process dies while
// no master runs; the next master cannot re-attach to it, starts a new
// one, and recovers the children through it from their handles: same
// pids, no restart, and a later stop reaches them.
func TestExternalDriverGoneWhileMasterDown(t *testing.T) {
	c, cfg, a := plugRunning(t)
	before := pidsOf(t, c, "plug")
	drv := a.Drivers()[1].PID
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(drv, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the driver to die", func() bool { return !alive(drv) })
	b := openDriverAgent(t, cfg)
	d, _ := driverInfo(b, "rawexec")
	if d.PID == 0 || d.PID == drv || !d.Available {
		t.Fatalf("driver after the restart %+v, want a new process", d)
	}
	if kids := b.Children(); len(kids) != 2 {
		t.Fatalf("children %+v", kids)
	}
	waitFor(t, 10*time.Second, "the master to link again", b.Linked)
	for name, pid := range before {
		if !alive(pid) {
			t.Fatalf("%s (pid %d) died", name, pid)
		}
	}
	if got := pidsOf(t, c, "plug"); got["plug.0"] != before["plug.0"] || got["plug.1"] != before["plug.1"] {
		t.Fatalf("lanmanager has %v, want %v", got, before)
	}
	if _, err := c.Scale(t.Context(), "plug", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the children to stop", func() bool { return len(b.Children()) == 0 })
	for name, pid := range before {
		if alive(pid) {
			t.Fatalf("%s (pid %d) still runs", name, pid)
		}
	}
}

// TestDriversOthersMayChange: a driver binary owned by another user, and
// a plugins directory that group or others may write, are refused: who
// can change or add a driver would run code as the master.
func TestDriversOthersMayChange(t *testing.T) {
	if os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "chown to another user needs root")
	}
	srv, _ := newLan(t)

	cfg := testConfig(t, srv.Addr())
	cfg.PluginsDirectory = pluginsDir(t)
	if err := os.Chown(filepath.Join(cfg.PluginsDirectory, "berth-driver-rawexec"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	a := openDriverAgent(t, cfg)
	if _, ok := driverInfo(a, "rawexec"); ok {
		t.Error("a driver binary owned by another user was started")
	}
	a.Close()

	cfg = testConfig(t, srv.Addr())
	cfg.PluginsDirectory = pluginsDir(t)
	if err := os.Chmod(cfg.PluginsDirectory, 0o777); err != nil {
		t.Fatal(err)
	}
	a = openDriverAgent(t, cfg)
	if ds := a.Drivers(); len(ds) != 1 || ds[0].Name != "exec" {
		t.Errorf("drivers of a plugins directory anyone may write: %+v, want exec only", ds)
	}
}

// plugRunning starts a lanmanager and a master whose plugins directory
// holds rawexec, and a need "plug" of 2 instances run by rawexec; it
// returns once both run.
func plugRunning(t *testing.T) (*lan.Client, master.Config, *master.Agent) {
	t.Helper()
	srv, c := newLan(t)
	cfg := testConfig(t, srv.Addr())
	cfg.PluginsDirectory = pluginsDir(t)
	a := openDriverAgent(t, cfg)
	waitFor(t, 10*time.Second, "the master to link", a.Linked)
	exe, _ := os.Executable()
	n := 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "plug", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.HTTP}, Driver: "rawexec"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "2 plug running", func() bool { return running(t, c, "plug") == 2 })
	return c, cfg, a
}
