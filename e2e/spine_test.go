package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/needs"
)

// TestSpine runs a lanmanager and two masters as real processes and walks a
// need through placement, approval, a crash, scale-down, scale-up and
// removal.
func TestSpine(t *testing.T) {
	lan := startLan(t, "s3cret")
	m1 := startMaster(t, lan, "m1", 50)
	m2 := startMaster(t, lan, "m2", 50)
	masters := map[string]*masterEnv{"m1": m1, "m2": m2}

	lan.mustCLI(t, "need", "add", "web", "--instances", "3", "--protocols", "http,tcp", "--", bin.hello)
	waitFor(t, 30*time.Second, "3 running instances of web", func() bool { return len(lan.running(t, "web")) == 3 })

	run := lan.running(t, "web")
	perMaster := map[string]int{}
	seen := map[int]bool{}
	for name, s := range run {
		perMaster[s.Master]++
		m := masters[s.Master]
		if m == nil {
			t.Fatalf("%s runs on unknown master %q", name, s.Master)
		}
		for _, p := range []needs.Protocol{needs.HTTP, needs.TCP} {
			port := s.Ports[p]
			if !m.inRange(p, port) {
				t.Errorf("%s: %s port %d outside master %s's range", name, p, port, s.Master)
			}
			if seen[port] {
				t.Errorf("%s: port %d handed out twice", name, port)
			}
			seen[port] = true
		}
		body, err := httpGet(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/", s.Ports[needs.HTTP]))
		if err != nil || !strings.Contains(body, "hello from "+name) {
			t.Errorf("GET %s: %q, %v", name, body, err)
		}
	}
	if perMaster["m1"] == 0 || perMaster["m2"] == 0 {
		t.Fatalf("instances not spread over both masters: %v", perMaster)
	}
	// Each master's own view agrees.
	var psTotal int
	for _, m := range masters {
		psTotal += len(m.ps(t))
	}
	if psTotal != 3 {
		t.Errorf("master ps lists %d children in all, want 3", psTotal)
	}

	// kill -9 a child: the instance comes back with a new pid.
	victim := run["web.0"]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "web.0 to run again with a new pid", func() bool {
		s := lan.running(t, "web")["web.0"]
		return s != nil && s.PID != victim.PID
	})
	st := lan.need(t, "web")
	for _, in := range st.InstanceList {
		if in.Name == "web.0" && (in.Restarts < 1 || in.LastExit != "signal SIGKILL") {
			t.Errorf("web.0 after kill -9: restarts %d, last exit %q", in.Restarts, in.LastExit)
		}
	}

	// Scale to 1: two instances stop, their processes go, their ports free.
	before := lan.running(t, "web")
	lan.mustCLI(t, "need", "scale", "web", "1")
	waitFor(t, 30*time.Second, "web to have one service", func() bool { return len(lan.services(t)) == 1 })
	for name, s := range before {
		if name == "web.0" {
			continue
		}
		waitFor(t, 10*time.Second, name+" process to be gone", func() bool { return !alive(s.PID) })
		for _, port := range s.Ports {
			if dialOK(port) {
				t.Errorf("%s's port %d still answers after scale-down", name, port)
			}
		}
	}
	if n := len(m1.ps(t)) + len(m2.ps(t)); n != 1 {
		t.Errorf("after scale to 1, masters run %d children, want 1", n)
	}

	// Scale up again: the freed ports are leased again (lowest free first).
	lan.mustCLI(t, "need", "scale", "web", "3")
	waitFor(t, 30*time.Second, "3 running again", func() bool { return len(lan.running(t, "web")) == 3 })
	for name, s := range lan.running(t, "web") {
		if name == "web.0" {
			continue
		}
		m := masters[s.Master]
		if p := s.Ports[needs.HTTP]; p >= m.http+2 {
			t.Errorf("%s got http port %d; the freed low ports of %s were not reused", name, p, m.name)
		}
	}

	// need rm leaves no process behind.
	var pids []int
	for _, s := range lan.running(t, "web") {
		pids = append(pids, s.PID)
	}
	lan.mustCLI(t, "need", "rm", "web")
	waitFor(t, 30*time.Second, "no services left", func() bool { return len(lan.services(t)) == 0 })
	for _, pid := range pids {
		waitFor(t, 10*time.Second, fmt.Sprintf("pid %d gone", pid), func() bool { return !alive(pid) })
	}
	if n := len(m1.ps(t)) + len(m2.ps(t)); n != 0 {
		t.Errorf("after need rm, masters run %d children", n)
	}
	if out := lan.mustCLI(t, "need", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("need ls after rm: %s", out)
	}

	// Clean shutdown: masters and lanmanager exit 0 on SIGTERM.
	for _, m := range masters {
		if err := m.proc.stop(t, 15*time.Second); err != nil {
			t.Errorf("master %s exit: %v", m.name, err)
		}
	}
	if err := lan.proc.stop(t, 15*time.Second); err != nil {
		t.Errorf("lanmanager exit: %v", err)
	}
}

// TestTokenRequired checks that calls without the token are refused.
func TestTokenRequired(t *testing.T) {
	lan := startLan(t, "tok")
	noToken := &lanEnv{addr: lan.addr, token: ""}
	_, err := noToken.cli(t, "need", "ls")
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("need ls without token: %v, want a token error", err)
	}
	wrong := &lanEnv{addr: lan.addr, token: "nope"}
	if _, err := wrong.cli(t, "service", "ls"); err == nil {
		t.Fatal("service ls with a wrong token succeeded")
	}
	resp, err := httpGet(t.Context(), "http://"+lan.addr+"/v1/needs")
	if err != nil || !strings.Contains(resp, "token") {
		t.Fatalf("plain GET: %q, %v", resp, err)
	}
	lan.mustCLI(t, "need", "ls")
}

// TestBackoff declares a need whose command exits at once and checks that
// the back-off shows and grows.
func TestBackoff(t *testing.T) {
	lan := startLan(t, "")
	startMaster(t, lan, "m1", 20)
	lan.mustCLI(t, "need", "add", "crash", "--", "sh", "-c", "exit 3")
	var last *needs.Instance
	waitFor(t, 30*time.Second, "crash.0 to fail 4 times", func() bool {
		st := lan.need(t, "crash")
		if len(st.InstanceList) != 1 {
			return false
		}
		last = st.InstanceList[0]
		return last.Restarts >= 4 && last.State == needs.Backoff
	})
	if last.LastExit != "exit code 3" {
		t.Errorf("last exit %q, want exit code 3", last.LastExit)
	}
	if d := last.NextAttempt.Sub(last.Since); d < needs.BackoffDelay(last.Failures)-time.Millisecond || d > needs.BackoffDelay(last.Failures)+time.Millisecond {
		t.Errorf("next attempt %s after failure %d, want %s", d, last.Failures, needs.BackoffDelay(last.Failures))
	}
	out := lan.mustCLI(t, "need", "show", "crash")
	if !strings.Contains(out, "backoff") && !strings.Contains(out, "starting") && !strings.Contains(out, "pending") {
		t.Errorf("need show does not show the state:\n%s", out)
	}
	if !strings.Contains(out, "exit code 3") {
		t.Errorf("need show does not show the last exit:\n%s", out)
	}
}

// TestDev runs `lanmanager dev`, serves a need through it and checks that
// Ctrl-C stops every child.
func TestDev(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, dir, "dev", nil, bin.lanmanager, "dev", "--listen", addr, "--ipc-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0")
	lan := &lanEnv{addr: addr}
	waitFor(t, 15*time.Second, "dev master to connect", func() bool {
		out, err := lan.cli(t, "master", "ls")
		return err == nil && strings.Contains(out, "connected")
	})
	lan.mustCLI(t, "need", "add", "hello", "--instances", "2", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(lan.running(t, "hello")) == 2 })
	var pids []int
	for _, s := range lan.running(t, "hello") {
		pids = append(pids, s.PID)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("dev exit: %v", p.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not exit on SIGINT")
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("child %d survived dev's shutdown", pid)
		}
	}
}
