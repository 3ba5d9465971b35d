package spawn

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestStopTerm(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	start := time.Now()
	got := c.Stop(t.Context(), time.Minute)
	if want := (Exit{Code: -1, Signal: "SIGTERM"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Stop took %v for a child that dies on SIGTERM", d)
	}
}

func TestStopIgnoreTerm(t *testing.T) {
	spec := helperSpec(t, "ignore-term")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	const grace = 200 * time.Millisecond
	start := time.Now()
	got := c.Stop(t.Context(), grace)
	if want := (Exit{Code: -1, Signal: "SIGKILL"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if d := time.Since(start); d < grace {
		t.Errorf("Stop returned after %v, before the grace of %v", d, grace)
	}
}

func TestStopCancelledContext(t *testing.T) {
	spec := helperSpec(t, "ignore-term")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := c.Stop(ctx, time.Hour); got.Signal != "SIGKILL" {
		t.Errorf("got %+v, want SIGKILL", got)
	}
}

// TestOutlivesStartContext checks that ending the start-up context does not
// kill the child: it still dies of Stop's SIGTERM.
func TestOutlivesStartContext(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	ctx, cancel := context.WithCancel(t.Context())
	c, err := Start(ctx, nil, spec)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitForLog(t, spec, "ready")
	if got := c.Stop(t.Context(), time.Minute); got.Signal != "SIGTERM" {
		t.Errorf("got %+v, want SIGTERM", got)
	}
}

// TestStopGrandchild stops a child whose grandchild ignores SIGTERM: the
// child dies of SIGTERM and the grandchild is swept with SIGKILL.
func TestStopGrandchild(t *testing.T) {
	spec, gpid := forkGrandchildSpec(t)
	c := startChild(t, spec)
	g := gpid()
	if !alive(g) {
		t.Fatalf("grandchild %d is not running", g)
	}
	if pgid, err := syscall.Getpgid(g); err != nil || pgid != c.PID() {
		t.Fatalf("grandchild %d: pgid %d, %v; want %d", g, pgid, err, c.PID())
	}
	if got := c.Stop(t.Context(), time.Minute); got.Signal != "SIGTERM" {
		t.Errorf("got %+v, want SIGTERM", got)
	}
	retryUntil(t, 10*time.Second, func() bool { return !alive(g) }, "grandchild "+strconv.Itoa(g)+" to die")
}

// TestGrandchildSweptOnExit checks that a grandchild dies when the child
// exits by itself.
func TestGrandchildSweptOnExit(t *testing.T) {
	spec, gpid := forkGrandchildSpec(t)
	spec.Env = append(spec.Env, "SPAWN_THEN_EXIT=1")
	c := startChild(t, spec)
	if got := waitDone(t, c); got != (Exit{}) {
		t.Errorf("got %+v, want exit code 0", got)
	}
	g := gpid()
	retryUntil(t, 10*time.Second, func() bool { return !alive(g) }, "grandchild "+strconv.Itoa(g)+" to die")
}

// forkGrandchildSpec returns a spec for a child with a grandchild that
// ignores SIGTERM, and a function that reads the grandchild's pid from the
// log once the child has printed it.
func forkGrandchildSpec(t *testing.T) (Spec, func() int) {
	spec := helperSpec(t, "fork-grandchild")
	return spec, func() int {
		t.Helper()
		waitForLog(t, spec, "grandchild=")
		b, err := os.ReadFile(spec.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		_, after, _ := strings.Cut(string(b), "grandchild=")
		pid, err := strconv.Atoi(strings.TrimSpace(after))
		if err != nil {
			t.Fatalf("log %q: %v", b, err)
		}
		// In case the sweep failed; the start time guards against a reused pid.
		if st, err := ProcStartTime(pid); err == nil {
			t.Cleanup(func() {
				if now, err := ProcStartTime(pid); err == nil && now == st {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
		}
		return pid
	}
}

func TestConcurrentStop(t *testing.T) {
	spec := helperSpec(t, "ignore-term")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	var wg sync.WaitGroup
	exits := make([]Exit, 8)
	for i := range exits {
		wg.Go(func() {
			exits[i] = c.Stop(t.Context(), time.Duration(i)*50*time.Millisecond)
		})
	}
	wg.Wait()
	want := Exit{Code: -1, Signal: "SIGKILL"}
	for i, e := range exits {
		if e != want {
			t.Errorf("Stop %d: %+v, want %+v", i, e, want)
		}
	}
	if e := c.Stop(t.Context(), time.Hour); e != want {
		t.Errorf("Stop after exit: %+v", e)
	}
}

func TestStartTime(t *testing.T) {
	c := startChild(t, helperSpec(t, "sleep-forever"))
	st, err := ProcStartTime(c.PID())
	if err != nil {
		t.Fatal(err)
	}
	if st == 0 || c.StartTime() != st {
		t.Errorf("StartTime() = %d, ProcStartTime = %d", c.StartTime(), st)
	}
	self, err := ProcStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st < self {
		t.Errorf("child started at %d, before the test binary at %d", st, self)
	}
}
