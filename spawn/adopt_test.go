package spawn

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// adopt adopts the child c started, as a restarted master would, and
// checks the watch goroutine is gone when the test ends.
func adopt(t *testing.T, c *Child) *Child {
	t.Helper()
	a, err := Adopt(c.PID(), c.StartTime(), Tracking{})
	if err != nil {
		t.Fatalf("Adopt(%d, %d): %v", c.PID(), c.StartTime(), err)
	}
	if !a.Adopted() || c.Adopted() {
		t.Errorf("Adopted() = %v for the adopted child, %v for the started one", a.Adopted(), c.Adopted())
	}
	if a.PID() != c.PID() || a.StartTime() != c.StartTime() {
		t.Errorf("adopted pid %d start %d, want %d %d", a.PID(), a.StartTime(), c.PID(), c.StartTime())
	}
	t.Cleanup(func() {
		a.Release()
		retryUntil(t, 5*time.Second, func() bool { return watchGoroutines() == 0 }, "no watch goroutine after Release")
	})
	return a
}

func watchGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*adoptedProcess).watch")
}

// TestAdoptSeesExit: an adopted child that is killed from outside is
// noticed through its pidfd, with an unknown status.
func TestAdoptSeesExit(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	a := adopt(t, c)
	if e := a.Exit(); !errors.Is(e.Err, ErrNotExited) {
		t.Errorf("Exit before the exit: %+v", e)
	}
	syscall.Kill(c.PID(), syscall.SIGKILL)
	if got := waitDone(t, a); got.Code != -1 || !errors.Is(got.Err, ErrExitUnknown) {
		t.Errorf("adopted exit = %+v, want code -1 and ErrExitUnknown", got)
	}
	if err := a.Signal(syscall.SIGTERM); err == nil {
		t.Errorf("Signal after the exit: nil error, want os.ErrProcessDone")
	}
}

// TestAdoptStopIgnoreTerm: Stop of an adopted child that ignores SIGTERM
// gets to SIGKILL after the grace, like a started one.
func TestAdoptStopIgnoreTerm(t *testing.T) {
	spec := helperSpec(t, "ignore-term")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	a := adopt(t, c)
	const grace = 200 * time.Millisecond
	start := time.Now()
	got := a.Stop(t.Context(), grace)
	if got.Code != -1 || !errors.Is(got.Err, ErrExitUnknown) {
		t.Errorf("Stop = %+v, want code -1 and ErrExitUnknown", got)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("Stop returned after %v, before the grace of %v", d, grace)
	}
	// The started Child, its real parent, saw how it died.
	if e := waitDone(t, c); e.Signal != "SIGKILL" {
		t.Errorf("parent saw %+v, want SIGKILL", e)
	}
}

// TestAdoptStopGrandchild: stopping an adopted child whose grandchild
// ignores SIGTERM leaves nothing: the leader dies of SIGTERM and the
// grandchild is swept with SIGKILL when the watch sees the leader go.
func TestAdoptStopGrandchild(t *testing.T) {
	spec, gpid := forkGrandchildSpec(t)
	c := startChild(t, spec)
	g := gpid()
	a := adopt(t, c)
	a.Stop(t.Context(), time.Minute)
	if e := waitDone(t, c); e.Signal != "SIGTERM" {
		t.Errorf("leader: %+v, want SIGTERM", e)
	}
	retryUntil(t, 10*time.Second, func() bool { return !alive(g) }, "grandchild "+strconv.Itoa(g)+" to die")
}

// TestAdoptSweepsOnExit: when an adopted leader exits by itself, the rest
// of its group is killed by the adopted Child. The leader is started with
// os/exec and not waited for until the end, so nothing else sweeps it.
func TestAdoptSweepsOnExit(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 600 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leader := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-leader, syscall.SIGKILL); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	sleeper, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	start, err := ProcStartTime(leader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Adopt(leader, start, Tracking{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Release)
	syscall.Kill(leader, syscall.SIGKILL) // the leader only
	if got := waitDone(t, a); !errors.Is(got.Err, ErrExitUnknown) {
		t.Errorf("exit %+v", got)
	}
	retryUntil(t, 10*time.Second, func() bool { return !alive(sleeper) }, "the leader's sleeper "+strconv.Itoa(sleeper)+" to die")
}

// TestAdoptRefusesStranger: a pid whose start time differs is a reused pid
// and is neither adopted nor signalled; without a start time nothing is
// adopted either.
func TestAdoptRefusesStranger(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	for _, start := range []uint64{c.StartTime() + 1, c.StartTime() - 1, 0} {
		if a, err := Adopt(c.PID(), start, Tracking{}); !errors.Is(err, ErrPIDReused) {
			t.Errorf("Adopt(%d, %d) = %v, %v; want ErrPIDReused", c.PID(), start, a, err)
		}
	}
	select {
	case <-c.Done():
		t.Fatalf("the refused process exited: %+v", c.Exit())
	default:
	}
	if !alive(c.PID()) {
		t.Fatal("the refused process is not running")
	}
}

// TestAdoptGone: a pid that has exited, or is only a zombie, is gone.
func TestAdoptGone(t *testing.T) {
	spec := helperSpec(t, "exit", "0")
	c := startChild(t, spec)
	waitDone(t, c)
	if _, err := Adopt(c.PID(), c.StartTime(), Tracking{}); !errors.Is(err, ErrGone) {
		t.Errorf("Adopt of a reaped pid: %v, want ErrGone", err)
	}
	if _, err := Adopt(0, 1, Tracking{}); !errors.Is(err, ErrGone) {
		t.Errorf("Adopt(0): %v, want ErrGone", err)
	}

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	start, err := ProcStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	retryUntil(t, 10*time.Second, func() bool { st, err := readProc(pid); return err == nil && st.state == 'Z' }, "true to be a zombie")
	if _, err := Adopt(pid, start, Tracking{}); !errors.Is(err, ErrGone) {
		t.Errorf("Adopt of a zombie: %v, want ErrGone", err)
	}
}

// TestAdoptRelease: Release ends the watch and leaves the process running.
func TestAdoptRelease(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	a, err := Adopt(c.PID(), c.StartTime(), Tracking{})
	if err != nil {
		t.Fatal(err)
	}
	retryUntil(t, 5*time.Second, func() bool { return watchGoroutines() == 1 }, "the watch goroutine")
	a.Release()
	a.Release()
	retryUntil(t, 5*time.Second, func() bool { return watchGoroutines() == 0 }, "no watch goroutine after Release")
	select {
	case <-a.Done():
		t.Error("Done closed by Release")
	case <-c.Done():
		t.Fatal("the released process exited")
	default:
	}
	// A second adoption of the same process works: that is what a master
	// restarting twice does.
	b := adopt(t, c)
	if got := b.Stop(context.Background(), time.Minute); !errors.Is(got.Err, ErrExitUnknown) {
		t.Errorf("Stop = %+v", got)
	}
}

// TestAdoptPollExited: the fallback watch used when the runtime's poller
// fails on the pidfd sees the exit of the process by polling, and ends on
// a release. The process is watched by pollExited alone here.
func TestAdoptPollExited(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	watched := func(pid int, start uint64) *adoptedProcess {
		fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "pidfd")
		t.Cleanup(func() { f.Close() })
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		p := &adoptedProcess{pid: pid, startTime: start, f: f, rc: rc}
		p.ctx, p.cancel = context.WithCancel(context.Background())
		return p
	}
	p := watched(c.PID(), c.StartTime())
	got := make(chan bool, 1)
	go func() { got <- p.pollExited() }()
	syscall.Kill(c.PID(), syscall.SIGKILL)
	select {
	case exited := <-got:
		if !exited {
			t.Error("pollExited = false for a process that was killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pollExited did not see the exit within 10s")
	}

	spec2 := helperSpec(t, "sleep-forever")
	c2 := startChild(t, spec2)
	waitForLog(t, spec2, "ready")
	p2 := watched(c2.PID(), c2.StartTime())
	go func() { got <- p2.pollExited() }()
	p2.cancel()
	select {
	case exited := <-got:
		if exited {
			t.Error("pollExited = true for a released, live process")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pollExited did not end on a release within 10s")
	}
	syscall.Kill(c2.PID(), syscall.SIGKILL)
}
