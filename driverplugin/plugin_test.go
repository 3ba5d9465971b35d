package driverplugin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/driverplugin"
	"berth/spawn"
)

// openRawexec opens the example driver with fast pings.
func openRawexec(t *testing.T, reattach *driverplugin.ReattachState, states chan<- *driverplugin.ReattachState) (*driverplugin.Plugin, *syncBuffer) {
	t.Helper()
	log, buf := testLogger(t)
	p := driverplugin.Open(t.Context(), driverplugin.Config{
		Name: "rawexec", Path: rawexec(t), Logger: log, Reattach: reattach,
		PingInterval: 100 * time.Millisecond, PingTimeout: 2 * time.Second, MaxBackoff: time.Second,
		OnConnect: func(s *driverplugin.ReattachState) {
			if states != nil {
				select {
				case states <- s:
				default:
				}
			}
		},
	})
	if fp := p.Fingerprint(); !fp.Available {
		p.Close()
		t.Fatalf("fingerprint: %+v", fp)
	}
	return p, buf
}

func sleepSpec(t *testing.T, id string) spawn.Spec {
	return spawn.Spec{Task: id, Instance: "t." + id, Command: []string{"sleep", "300"},
		Env: []string{"PATH=/usr/bin:/bin", "BERTH_ALLOC=" + id}, LogPath: filepath.Join(t.TempDir(), id+".log"),
		Tracking: spawn.Tracking{Marks: []string{"BERTH_ALLOC=" + id}}}
}

// alive reports whether pid runs (a zombie does not: an orphan's zombie
// waits for whoever reaps orphans here).
func alive(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	if strings.Contains(string(b), ") Z ") {
		return fmt.Errorf("pid %d is a zombie", pid)
	}
	return nil
}

func waitDone(t *testing.T, c *spawn.Child, timeout time.Duration) spawn.Exit {
	t.Helper()
	select {
	case <-c.Done():
		return c.Exit()
	case <-time.After(timeout):
		t.Fatalf("child %d not done after %s", c.PID(), timeout)
		return spawn.Exit{}
	}
}

func TestStartWaitSignal(t *testing.T) {
	p, logs := openRawexec(t, nil, nil)
	defer p.Close()
	fp := p.Fingerprint()
	if fp.Name != "rawexec" || fp.Version != "1.0.0" || !fp.Signals || fp.SocketActivation {
		t.Fatalf("fingerprint %+v", fp)
	}
	logPath := filepath.Join(t.TempDir(), "exit3.log")
	c, err := spawn.Start(t.Context(), p, spawn.Spec{Task: "a1", Instance: "x.0",
		Command: []string{"sh", "-c", "echo out $FOO; exit 3"}, Env: []string{"PATH=/usr/bin:/bin", "FOO=bar"}, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	if ex := waitDone(t, c, 10*time.Second); ex.Code != 3 || ex.Err != nil {
		t.Fatalf("exit %+v, want code 3", ex)
	}
	if b, _ := os.ReadFile(logPath); string(b) != "out bar\n" {
		t.Fatalf("log %q", b)
	}
	c2, err := spawn.Start(t.Context(), p, sleepSpec(t, "a2"))
	if err != nil {
		t.Fatal(err)
	}
	if c2.StartTime() == 0 {
		t.Error("no start time")
	}
	if ex := c2.Stop(t.Context(), 5*time.Second); ex.Signal != "SIGTERM" {
		t.Fatalf("stopped: %+v, want SIGTERM", ex)
	}
	if err := c2.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal after exit: %v", err)
	}
	// A command that does not exist is a start error naming it.
	_, err = spawn.Start(t.Context(), p, spawn.Spec{Task: "a3", Command: []string{"no-such-cmd-xyz"}, Env: []string{"PATH=/bin"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-cmd-xyz") {
		t.Fatalf("start error %v", err)
	}
	// The driver's own log lines come through the host's logger, tagged.
	retryUntil(t, 5*time.Second, func() error {
		if s := logs.String(); !strings.Contains(s, `level=INFO msg="rawexec driver serving"`) || !strings.Contains(s, "driver=rawexec") {
			return fmt.Errorf("driver log line not seen in:\n%s", s)
		}
		return nil
	})
}

// TestKill9Driver: a driver process killed with SIGKILL is restarted, its
// running task re-attached (not lost, not started twice) and a task that
// exited meanwhile reported once.
func TestKill9Driver(t *testing.T) {
	p, _ := openRawexec(t, nil, nil)
	defer p.Close()
	keep, err := spawn.Start(t.Context(), p, sleepSpec(t, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	dies, err := spawn.Start(t.Context(), p, sleepSpec(t, "k2"))
	if err != nil {
		t.Fatal(err)
	}
	old := p.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// k2 exits while the driver is down.
	syscall.Kill(dies.PID(), syscall.SIGKILL)
	retryUntil(t, 20*time.Second, func() error {
		if pid := p.PID(); pid == 0 || pid == old {
			return fmt.Errorf("driver pid %d (old %d)", pid, old)
		}
		return nil
	})
	if ex := waitDone(t, dies, 20*time.Second); !errors.Is(ex.Err, spawn.ErrExitUnknown) {
		t.Fatalf("task that died while the driver was down: %+v, want unknown exit", ex)
	}
	select {
	case <-keep.Done():
		t.Fatalf("running task reported done: %+v", keep.Exit())
	default:
	}
	if err := alive(keep.PID()); err != nil {
		t.Fatal(err)
	}
	if p.Restarts() != 1 {
		t.Errorf("restarts %d, want 1", p.Restarts())
	}
	// The new driver process re-attached to it: a stop reaches it.
	retryUntil(t, 10*time.Second, func() error { return keep.Signal(syscall.SIGTERM) })
	ex := waitDone(t, keep, 20*time.Second)
	if !errors.Is(ex.Err, spawn.ErrExitUnknown) {
		t.Fatalf("re-attached task exit %+v", ex)
	}
	if err := alive(keep.PID()); err == nil {
		t.Fatal("task still runs after done")
	}
}

// TestStoppedDriver: a driver process that hangs (SIGSTOP) is noticed by
// the ping deadline, killed and restarted, and its task re-attached.
func TestStoppedDriver(t *testing.T) {
	p, logs := openRawexec(t, nil, nil)
	defer p.Close()
	c, err := spawn.Start(t.Context(), p, sleepSpec(t, "s1"))
	if err != nil {
		t.Fatal(err)
	}
	old := p.PID()
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	retryUntil(t, 30*time.Second, func() error {
		if pid := p.PID(); pid == 0 || pid == old {
			return fmt.Errorf("driver pid %d (old %d)", pid, old)
		}
		return nil
	})
	retryUntil(t, 10*time.Second, func() error {
		if alive(old) == nil {
			return fmt.Errorf("hung driver %d still runs", old)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "driver not answering") {
		t.Error("no log line about the hung driver")
	}
	if err := alive(c.PID()); err != nil {
		t.Fatal(err)
	}
	retryUntil(t, 10*time.Second, func() error { return c.Signal(syscall.SIGTERM) })
	waitDone(t, c, 20*time.Second)
}

// TestReattachAfterDetach: a master that leaves (Detach) and a new one
// that re-attaches to the same driver process with the persisted state
// and TLS certificates; the driver still knows its task, so its real exit
// status is reported.
func TestReattachAfterDetach(t *testing.T) {
	states := make(chan *driverplugin.ReattachState, 4)
	p1, _ := openRawexec(t, nil, states)
	st := <-states
	c1, err := spawn.Start(t.Context(), p1, sleepSpec(t, "r1"))
	if err != nil {
		p1.Close()
		t.Fatal(err)
	}
	h, ok := p1.Handle("r1")
	if !ok {
		t.Fatal("no handle")
	}
	pid := p1.PID()
	p1.Detach()
	if st == nil || st.PID != pid || len(st.ServerCert) == 0 {
		t.Fatalf("reattach state %+v", st)
	}
	p2, _ := openRawexec(t, st, nil)
	defer p2.Close()
	if p2.PID() != pid {
		t.Fatalf("re-attached to pid %d, want %d (a new driver was launched)", p2.PID(), pid)
	}
	proc, err := p2.Recover(h)
	if err != nil {
		t.Fatal(err)
	}
	c2 := spawn.Attach(proc)
	if c2.PID() != c1.PID() {
		t.Fatalf("recovered pid %d, want %d", c2.PID(), c1.PID())
	}
	if ex := c2.Stop(t.Context(), 5*time.Second); ex.Signal != "SIGTERM" || ex.Err != nil {
		t.Fatalf("exit %+v, want SIGTERM with a known status", ex)
	}
	// Without the certificates, nobody else can talk to it.
	bad := *st
	bad.ClientKey = nil
	log, _ := testLogger(t)
	p3 := driverplugin.Open(t.Context(), driverplugin.Config{Name: "rawexec", Path: rawexec(t), Logger: log, Reattach: &bad})
	defer p3.Close()
	if p3.PID() == pid {
		t.Fatal("re-attached without the client key")
	}
}

// TestProtocolVersionRefused: a driver of protocol version 2 is refused,
// and the fingerprint says why.
func TestProtocolVersionRefused(t *testing.T) {
	path := buildDriver(t, "berth/driverplugin/testdata/v2driver", "v2")
	log, _ := testLogger(t)
	p := driverplugin.Open(t.Context(), driverplugin.Config{Name: "v2", Path: path, Logger: log, MaxBackoff: time.Second})
	defer p.Close()
	fp := p.Fingerprint()
	if fp.Available || !strings.Contains(fp.Reason, "protocol version") || !strings.Contains(fp.Reason, "version 1") {
		t.Fatalf("fingerprint %+v", fp)
	}
	_, err := p.Start(context.Background(), sleepSpec(t, "v"))
	if err == nil {
		t.Fatal("started a task on a refused driver")
	}
}

// TestSignalWhileDriverDown: while the driver cannot be started, a SIGTERM
// is held and sent once a driver process is back, and a stop (whose
// SIGKILL cannot wait) kills the task directly.
func TestSignalWhileDriverDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "berth-driver-rawexec")
	b, err := os.ReadFile(rawexec(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	p := driverplugin.Open(t.Context(), driverplugin.Config{Name: "rawexec", Path: path, Logger: log,
		PingInterval: 100 * time.Millisecond, PingTimeout: time.Second, MaxBackoff: 200 * time.Millisecond})
	defer p.Close()
	held, err := spawn.Start(t.Context(), p, sleepSpec(t, "d1"))
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := spawn.Start(t.Context(), p, sleepSpec(t, "d2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(p.PID(), syscall.SIGKILL)
	retryUntil(t, 10*time.Second, func() error {
		if fp := p.Fingerprint(); fp.Available {
			return errors.New("driver still available")
		}
		return nil
	})
	if err := held.Signal(syscall.SIGTERM); !errors.Is(err, driverplugin.ErrDriverDown) {
		t.Fatalf("signal while the driver is down: %v, want ErrDriverDown", err)
	}
	if err := alive(held.PID()); err != nil {
		t.Fatal(err)
	}
	ex := stopped.Stop(t.Context(), 100*time.Millisecond)
	if !errors.Is(ex.Err, spawn.ErrExitUnknown) || ex.Signal != "SIGKILL" {
		t.Fatalf("stop without a driver: %+v", ex)
	}
	if err := alive(stopped.PID()); err == nil {
		t.Fatal("stopped task still runs")
	}
	if err := alive(held.PID()); err != nil {
		t.Fatalf("the other task: %v", err)
	}
	if err := os.Rename(path+".away", path); err != nil {
		t.Fatal(err)
	}
	ex = waitDone(t, held, 20*time.Second)
	if !errors.Is(ex.Err, spawn.ErrExitUnknown) {
		t.Fatalf("exit %+v", ex)
	}
	if err := alive(held.PID()); err == nil {
		t.Fatal("task still runs")
	}
}

// TestCheckOptions: the bwrap driver refuses an option it does not know
// with its reason, and takes good ones; a driver without an options check
// (rawexec) takes any.
func TestCheckOptions(t *testing.T) {
	path := buildDriver(t, "berth/cmd/berth-driver-bwrap", "bwrap")
	log, _ := testLogger(t)
	p := driverplugin.Open(t.Context(), driverplugin.Config{Name: "bwrap", Path: path, Logger: log})
	defer p.Close()
	for range 2 { // the second answer is the kept one
		err := p.CheckOptions(t.Context(), []string{"bind=/srv/data", "rw=/srv"})
		if err == nil || err.Error() != `driver option "rw=/srv": unknown option (known: bind, ro-bind, tmpfs)` {
			t.Fatalf("CheckOptions(rw=/srv) = %v, want the unknown option named", err)
		}
	}
	if err := p.CheckOptions(t.Context(), []string{"bind=/srv/data", "ro-bind=/srv/conf", "tmpfs=/home"}); err != nil {
		t.Fatalf("CheckOptions of good options: %v", err)
	}
	if err := p.CheckOptions(t.Context(), []string{"bind=srv"}); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("CheckOptions(bind=srv) = %v, want not absolute", err)
	}

	r, _ := openRawexec(t, nil, nil)
	defer r.Close()
	if err := r.CheckOptions(t.Context(), []string{"anything=1"}); err != nil {
		t.Fatalf("rawexec CheckOptions: %v", err)
	}
}

// TestStartErrorSaidOnce: a command the driver cannot start fails with a
// spawn.StartError that names the instance, the driver and the cause once
// (it said "start x.0: exec …" twice: the driver's and the master's).
func TestStartErrorSaidOnce(t *testing.T) {
	p, _ := openRawexec(t, nil, nil)
	defer p.Close()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := spawn.Start(t.Context(), p, spawn.Spec{Task: "a1", Instance: "x.0", Command: []string{notExec},
		Env: []string{"PATH=/usr/bin:/bin"}, LogPath: filepath.Join(dir, "x.log")})
	if _, ok := errors.AsType[*spawn.StartError](err); !ok {
		t.Fatalf("Start: %v (%T), want a *spawn.StartError", err, err)
	}
	msg := err.Error()
	if strings.Count(msg, "start x.0") != 1 || !strings.Contains(msg, "driver rawexec") || !strings.Contains(msg, "permission denied") {
		t.Errorf("Start: %q, want the instance once, the driver and the cause", msg)
	}
	t.Logf("start error: %s", msg)
}
