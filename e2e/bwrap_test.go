package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/needs"
	"berth/pipes"
)

// bwrapPlugins returns a plugins directory holding the bwrap driver.
func bwrapPlugins(t *testing.T) string {
	t.Helper()
	plugins := t.TempDir()
	b, err := os.ReadFile(bin.bwrap)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(plugins, "berth-driver-bwrap")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered before the master's cleanup, so it runs after it: a
	// master that leaves keeps its drivers running for the next one.
	t.Cleanup(func() { killByExe(path) })
	return plugins
}

// killByExe kills, with SIGKILL, every process running the binary path.
func killByExe(path string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == path {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// requireBwrap skips the test, with the driver's reason, where its
// fingerprint says sandboxes cannot run here; under CI=true or
// BERTH_BWRAP=require (.ci/run installs bubblewrap) it fails instead.
func requireBwrap(t *testing.T, available bool, reason string) {
	t.Helper()
	if available {
		return
	}
	if os.Getenv("CI") == "true" || os.Getenv("BERTH_BWRAP") == "require" {
		t.Fatalf("the bwrap driver is unavailable (CI=true or BERTH_BWRAP=require: it must work): %s", reason)
	}
	t.Skipf("the bwrap driver is unavailable (install Debian's bubblewrap; CI=true or BERTH_BWRAP=require turn this skip into a failure): %s", reason)
}

// gone reports whether path does not exist.
func gone(path string) bool {
	_, err := os.Lstat(path)
	return os.IsNotExist(err)
}

// shQuote quotes s for sh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestBwrapDriver: with the real binaries and berth-driver-bwrap in the
// plugins directory, a need with --driver bwrap runs its child in a
// sandbox. The child (sh, then examples/hello) cannot write to a path it
// sees but is not bound read-write, writes into its bind= directory, sees
// only its own processes in /proc, and still serves its berth port (the
// lanmanager's check passes: it runs) and says ready on its pipe. Each
// child's pipe is alone in a directory of its own (0700) in the master's
// socket directory, and the sandboxed child sees only its own there: not
// master.sock, not its exec sibling's pipe. The master is then killed
// with SIGKILL: the next one re-attaches to the same driver and the same
// sandboxed child; scaled to 0, the child's pipe directory is removed.
func TestBwrapDriver(t *testing.T) {
	l := startLan(t, "")
	base := freeports.Block(t, 3*4)
	m := startMasterWith(t, l, "m1", base, base+4, 4, masterOpts{extra: map[string]any{"pluginsdirectory": bwrapPlugins(t)}})
	d := m.drivers(t)["bwrap"]
	requireBwrap(t, d.Available, d.Reason)
	if d.PID == 0 {
		t.Fatalf("master drivers: bwrap %+v", d)
	}

	data := t.TempDir() // bind=: the child writes here
	ro := t.TempDir()   // ro-bind=: the child sees it, cannot write
	bins := filepath.Dir(bin.hello)
	script := "{ echo x > " + shQuote(ro+"/outside") + "; } 2> " + shQuote(data+"/outside.err")
	script += "; echo inside > " + shQuote(data+"/inside")
	script += "; ls /proc > " + shQuote(data+"/proc")
	// The master's socket directory as the child sees it: its own pipe's
	// directory only, neither master.sock nor a sibling's pipe.
	script += `; ls -a "$(dirname "$(dirname "$BERTH_PIPE")")" > ` + shQuote(data+"/sockdir")
	script += `; [ -S "$BERTH_PIPE" ] && echo "$BERTH_PIPE" > ` + shQuote(data+"/pipe")
	script += "; exec " + shQuote(bin.hello)
	// A sibling, run by the exec driver: its pipe is in the same socket
	// directory.
	l.mustCLI(t, "need", "add", "sib", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "the sibling to run", func() bool { return len(l.running(t, "sib")) == 1 })
	l.mustCLI(t, "need", "add", "box", "--protocols", "http", "--driver", "bwrap",
		"--driver-opt", "bind="+data, "--driver-opt", "ro-bind="+ro, "--driver-opt", "ro-bind="+bins, "--", "sh", "-c", script)
	waitFor(t, 30*time.Second, "the sandboxed child to run", func() bool { return len(l.running(t, "box")) == 1 })
	var inst *needs.Instance
	for _, s := range l.running(t, "box") {
		inst = s
	}
	var box, sib pipes.ChildInfo
	waitFor(t, 20*time.Second, "the child to say ready on its pipe", func() bool {
		for _, c := range m.ps(t) {
			switch c.Instance {
			case inst.Name:
				box = c
			case "sib.0":
				sib = c
			}
		}
		return box.Ready && box.PID == inst.PID && box.Driver == "bwrap"
	})
	if p := parentOf(inst.PID); p != d.PID {
		t.Fatalf("the child (pid %d) has parent %d, want the driver %d", inst.PID, p, d.PID)
	}
	if port := inst.Ports[needs.HTTP]; !dialOK(port) {
		t.Fatalf("the child's http port %d does not answer", port)
	}

	if b, err := os.ReadFile(filepath.Join(data, "inside")); err != nil || string(b) != "inside\n" {
		t.Fatalf("the write inside the bind: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "outside.err")); err != nil || !strings.Contains(strings.ToLower(string(b)), "read-only file system") {
		t.Fatalf("the write outside the binds: stderr %q, %v; want read-only file system", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "outside")); err == nil {
		t.Fatal("the write outside the binds reached the host")
	}
	// Each child's pipe is alone in a directory of its own, in the
	// socket directory with master.sock; the sandbox shows the child only
	// its own.
	sockDir := filepath.Dir(filepath.Dir(box.Pipe))
	if filepath.Base(box.Pipe) != "pipe" || filepath.Dir(filepath.Dir(sib.Pipe)) != sockDir {
		t.Fatalf("pipes %s and %s: want <socket dir>/<alloc>/pipe each", box.Pipe, sib.Pipe)
	}
	if fi, err := os.Stat(filepath.Dir(box.Pipe)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the pipe's directory: %v, %v; want mode 0700", fi, err)
	}
	if _, err := os.Stat(filepath.Join(sockDir, "master.sock")); err != nil {
		t.Fatalf("master.sock is not in the socket directory %s: %v", sockDir, err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "pipe")); err != nil || string(b) != box.Pipe+"\n" {
		t.Fatalf("the child's own pipe as it sees it: %q, %v; want %s a socket", b, err, box.Pipe)
	}
	if b, err := os.ReadFile(filepath.Join(data, "sockdir")); err != nil || strings.Join(strings.Fields(string(b)), " ") != ". .. "+filepath.Base(filepath.Dir(box.Pipe)) {
		t.Fatalf("the socket directory as the child sees it: %q, %v; want its own pipe's directory only", b, err)
	}

	b, err := os.ReadFile(filepath.Join(data, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	slices.Sort(pids)
	// bwrap's init (1), sh (2), ls (3): nothing of the host.
	if len(pids) == 0 || len(pids) > 3 || pids[0] != 1 || pids[len(pids)-1] > 3 {
		t.Fatalf("the sandbox's /proc lists pids %v, want only its own (1..3)", pids)
	}

	m.kill9()
	if !alive(d.PID) || !alive(inst.PID) {
		t.Fatal("the driver or the child died with the master")
	}
	m.restart(t, l)
	waitFor(t, 20*time.Second, "the master to list the children again", func() bool { return len(m.ps(t)) == 2 })
	if got := m.drivers(t)["bwrap"]; got.PID != d.PID || !got.Available {
		t.Fatalf("after the master's crash the driver is %+v, want the same process %d re-attached", got, d.PID)
	}
	after := l.running(t, "box")
	if a := after[inst.Name]; a == nil || a.PID != inst.PID || a.Alloc != inst.Alloc {
		t.Fatalf("%s: was pid %d alloc %s, now %+v", inst.Name, inst.PID, inst.Alloc, a)
	}
	for _, c := range m.ps(t) {
		if c.Instance == inst.Name && (c.PID != inst.PID || c.Driver != "bwrap" || c.Pipe != box.Pipe) {
			t.Fatalf("master ps after the restart: %+v", c)
		}
	}
	for _, in := range l.need(t, "box").InstanceList {
		if in.Restarts != 0 {
			t.Fatalf("%s restarted %d times", in.Name, in.Restarts)
		}
	}

	l.mustCLI(t, "need", "scale", "box", "0")
	waitFor(t, 30*time.Second, "the child to stop", func() bool { return len(m.ps(t)) == 1 })
	if alive(inst.PID) {
		t.Errorf("the child (pid %d) still runs after scale 0", inst.PID)
	}
	waitFor(t, 10*time.Second, "the pipe's directory to be removed", func() bool { return gone(filepath.Dir(box.Pipe)) })
}

// TestBwrapDriverUnavailable: a master whose PATH has no bwrap lists the
// driver as unavailable with the reason, does not bid for a --driver bwrap
// need, and need show says why.
func TestBwrapDriverUnavailable(t *testing.T) {
	env, err := exec.LookPath("env")
	if err != nil {
		t.Skipf("no env program to start the master with another PATH: %v", err)
	}
	path := t.TempDir() // nothing in it: no bwrap
	l := startLan(t, "")
	base := freeports.Block(t, 3*4)
	m := startMasterWith(t, l, "m1", base, base+4, 4, masterOpts{
		wrap:  []string{env, "PATH=" + path},
		extra: map[string]any{"pluginsdirectory": bwrapPlugins(t)}})
	const reason = "bwrap not found in PATH (install Debian's bubblewrap package)"
	if d := m.drivers(t)["bwrap"]; d.Available || d.Reason != reason || d.PID == 0 {
		t.Fatalf("master drivers: bwrap %+v, want unavailable: %s", d, reason)
	}
	out, err := exec.Command(bin.master, "drivers", "--config", m.config).Output()
	if err != nil || !strings.Contains(string(out), reason) {
		t.Fatalf("master drivers: %v:\n%s\nwant the reason %q", err, out, reason)
	}

	l.mustCLI(t, "need", "add", "box", "--protocols", "http", "--driver", "bwrap", "--driver-opt", "bind="+t.TempDir(), "--", bin.hello)
	want := "master m1: driver bwrap unavailable: " + reason
	waitFor(t, 20*time.Second, "need show to say why", func() bool {
		return strings.Contains(l.mustCLI(t, "need", "show", "box"), want)
	})
	if n := len(l.running(t, "box")); n != 0 || len(m.ps(t)) != 0 {
		t.Fatalf("%d running, children %+v: want none", n, m.ps(t))
	}
}

// TestBwrapDriverBadOption: a driver option the bwrap driver does not
// know is refused before the bid (the master asks the driver, which
// parses it): the instance stays pending, is never started, and need show
// names the option.
func TestBwrapDriverBadOption(t *testing.T) {
	l := startLan(t, "")
	base := freeports.Block(t, 3*4)
	m := startMasterWith(t, l, "m1", base, base+4, 4, masterOpts{extra: map[string]any{"pluginsdirectory": bwrapPlugins(t)}})
	d := m.drivers(t)["bwrap"]
	requireBwrap(t, d.Available, d.Reason) // an unavailable driver is refused for that first
	l.mustCLI(t, "need", "add", "box", "--protocols", "http", "--driver", "bwrap",
		"--driver-opt", "bind="+t.TempDir(), "--driver-opt", "rw=/srv", "--", bin.hello)
	want := `master m1: driver bwrap: driver option "rw=/srv": unknown option (known: bind, ro-bind, tmpfs)`
	waitFor(t, 20*time.Second, "need show to say why", func() bool {
		return strings.Contains(l.mustCLI(t, "need", "show", "box"), want)
	})
	for _, in := range l.need(t, "box").InstanceList {
		if in.State != needs.Pending || in.Restarts != 0 || in.Failures != 0 {
			t.Fatalf("%s: %+v, want pending and never started", in.Name, in)
		}
	}
	if n := len(m.ps(t)); n != 0 {
		t.Fatalf("%d children, want none: %+v", n, m.ps(t))
	}
}
