package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// client returns an API client for l, for polling every few milliseconds
// (the CLI takes longer to start).
func (l *lanEnv) client() *lan.Client {
	return &lan.Client{Addr: "http://" + l.addr, Token: l.token}
}

// instance returns need's instance name as the API shows it, or nil.
func instance(t *testing.T, c *lan.Client, need, name string) *needs.Instance {
	t.Helper()
	st, err := c.Need(t.Context(), need)
	if err != nil {
		return nil
	}
	for _, in := range st.InstanceList {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// waitInstance polls the API every 5 ms until cond holds for the instance.
func waitInstance(t *testing.T, c *lan.Client, need, name string, timeout time.Duration, what string, cond func(*needs.Instance) bool) *needs.Instance {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if in := instance(t, c, need, name); in != nil && cond(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s %s; last: %+v", timeout, name, what, instance(t, c, need, name))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bindLoopback binds 127.0.0.1:port as a process berth does not know would.
func bindLoopback(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// quarantineLogged reports whether the master's log says port went into
// quarantine.
func (m *masterEnv) quarantineLogged(port int) bool {
	b, _ := os.ReadFile(m.proc.log)
	re := regexp.MustCompile(`msg="port quarantined".* proto=\w+ port=` + strconv.Itoa(port) + ` until=\S+`)
	return re.Match(b)
}

// TestPortTakenBeforeChildBinds: a process berth does not know binds an
// instance's port after the master leased it and before the child binds
// it. The child fails, the master finds the port still taken once the child
// is gone and quarantines it, and the instance runs on another port after
// one restart. While in quarantine the port is not leased again, even once
// the outsider has let it go: a third instance in a range of three stays
// pending, with no attempt made.
func TestPortTakenBeforeChildBinds(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 3)
	c := l.client()
	// The first child waits before binding, to give the outsider its
	// chance; the ones after it bind at once.
	flag := filepath.Join(t.TempDir(), "waited")
	const wait = 2 * time.Second
	script := fmt.Sprintf(`[ -e %s ] || { touch %s; sleep %g; }; exec %s`, flag, flag, wait.Seconds(), bin.hello)
	l.mustCLI(t, "need", "add", "late", "--protocols", "http", "--", "sh", "-c", script)

	first := waitInstance(t, c, "late", "late.0", 20*time.Second, "to start with a port", func(in *needs.Instance) bool {
		return in.State == needs.Starting && in.Ports[needs.HTTP] != 0
	})
	taken := first.Ports[needs.HTTP]
	outsider, err := bindLoopback(taken)
	if err != nil {
		t.Fatalf("bind %d before the child (which waits %s): %v", taken, wait, err)
	}
	bound := time.Now()
	defer func() { outsider.Close() }()

	failed := waitInstance(t, c, "late", "late.0", 20*time.Second, "to fail", func(in *needs.Instance) bool {
		return in.Restarts > 0
	})
	failedAt := time.Now()
	again := waitInstance(t, c, "late", "late.0", 20*time.Second, "to run on another port", func(in *needs.Instance) bool {
		return in.State == needs.Running && in.Alloc != first.Alloc
	})
	recovered := time.Since(failedAt)
	port := again.Ports[needs.HTTP]
	if port == taken || !m.inRange(needs.HTTP, port) {
		t.Fatalf("late.0 runs on port %d; taken %d, range %d-%d", port, taken, m.http, m.http+m.size-1)
	}
	if again.Restarts > 3 {
		t.Errorf("late.0 restarted %d times to recover: a hot loop", again.Restarts)
	}
	figure(t, "port-taken-before-bind", "recovery", ms(recovered), "since_outside_bind", ms(time.Since(bound)),
		"child_wait", wait, "restarts", again.Restarts, "taken", taken, "new_port", port, "last_exit", strconv.Quote(failed.LastExit))
	if body, err := httpGet(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || !strings.Contains(body, "hello from late.0") {
		t.Errorf("GET late.0: %q, %v", body, err)
	}
	waitFor(t, 10*time.Second, "the master to log the quarantine", func() bool { return m.quarantineLogged(taken) })

	// The outsider lets go; the port stays in quarantine (60 s). One more
	// instance takes the last free port; the one after it finds none. (One
	// at a time: bids reserve nothing, so two offers at once could both see
	// the last port, and the loser would count a failed attempt.)
	outsider.Close()
	l.mustCLI(t, "need", "scale", "late", "2")
	waitFor(t, 30*time.Second, "2 running", func() bool { return l.need(t, "late").Running == 2 })
	l.mustCLI(t, "need", "scale", "late", "3")
	var st *needs.NeedStatus
	exhausted := fmt.Sprintf("http range %d-%d exhausted", m.http, m.http+m.size-1)
	waitFor(t, 30*time.Second, "2 running and 1 pending for want of a port", func() bool {
		st = l.need(t, "late")
		return st.Running == 2 && st.Pending == 1 && strings.Contains(strings.Join(st.Reasons, "\n"), exhausted)
	})
	for _, in := range st.InstanceList {
		if in.Ports[needs.HTTP] == taken {
			t.Errorf("%s got the quarantined port %d", in.Name, taken)
		}
		if in.State == needs.Pending && in.Restarts != 0 {
			t.Errorf("%s, which no port fits, was tried %d times", in.Name, in.Restarts)
		}
	}
	for _, k := range m.ps(t) {
		if k.Ports[needs.HTTP] == taken {
			t.Errorf("master leased the quarantined port %d to %s", taken, k.Instance)
		}
	}
	if out := l.mustCLI(t, "need", "show", "late"); !strings.Contains(out, exhausted) {
		t.Errorf("need show does not say why late.2 waits:\n%s", out)
	}
}

// TestPortTakenSocketActivation: with socket activation the master binds
// the ports itself. A port an outside process holds is quarantined and
// another one handed over without the child ever failing; the child sees
// LISTEN_FDS; and once the API shows the instance's port nobody else can
// bind it, as the master bound it before the child started.
func TestPortTakenSocketActivation(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 3)
	c := l.client()
	outsider, err := bindLoopback(m.http) // the port the master would lease first
	if err != nil {
		t.Fatal(err)
	}
	defer outsider.Close()

	start := time.Now()
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "sa", Command: []string{bin.hello}, Instances: &one,
		Protocols: []needs.Protocol{needs.HTTP}, SocketActivation: true}); err != nil {
		t.Fatal(err)
	}
	in := waitInstance(t, c, "sa", "sa.0", 20*time.Second, "to start with a port", func(in *needs.Instance) bool {
		return in.Ports[needs.HTTP] != 0
	})
	port := in.Ports[needs.HTTP]
	if port == m.http || !m.inRange(needs.HTTP, port) {
		t.Fatalf("sa.0 got port %d; the outsider holds %d, range %d-%d", port, m.http, m.http, m.http+m.size-1)
	}
	if l2, err := bindLoopback(port); err == nil {
		l2.Close()
		t.Fatalf("port %d could be bound by another process while sa.0 was %s", port, in.State)
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind %d: %v, want EADDRINUSE", port, err)
	}
	in = waitInstance(t, c, "sa", "sa.0", 20*time.Second, "to run", func(in *needs.Instance) bool { return in.State == needs.Running })
	figure(t, "port-taken-socket-activation", "need_add_to_running", ms(time.Since(start)), "restarts", in.Restarts,
		"taken", m.http, "port", port)
	if in.Restarts != 0 || in.LastExit != "" {
		t.Errorf("sa.0 failed on the way: restarts %d, last exit %q", in.Restarts, in.LastExit)
	}
	if !m.quarantineLogged(m.http) {
		t.Errorf("the master did not log port %d going into quarantine", m.http)
	}
	kids := m.ps(t)
	if len(kids) != 1 {
		t.Fatalf("master ps: %+v", kids)
	}
	waitFor(t, 10*time.Second, "hello to log its inherited socket", func() bool {
		b, _ := os.ReadFile(kids[0].Log)
		return strings.Contains(string(b), "sa.0: socket activation: inherited http")
	})
}

// TestPortSocketActivatedHello: examples/hello, declared with `need add
// --socket-activation`, serves on the sockets the master bound (http and tcp), passes the
// lanmanager's port check, and leaves its ports free and out of quarantine
// when removed.
func TestPortSocketActivatedHello(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 3)
	l.mustCLI(t, "need", "add", "hi", "--protocols", "tcp,http", "--socket-activation", "--", bin.hello)
	if st := l.need(t, "hi"); !st.SocketActivation {
		t.Fatalf("need show: socket activation not recorded: %+v", st.Need)
	}
	waitFor(t, 30*time.Second, "hi.0 to run", func() bool { return len(l.running(t, "hi")) == 1 })
	in := l.running(t, "hi")["hi.0"]
	body, err := httpGet(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/", in.Ports[needs.HTTP]))
	if err != nil || body != "hello from hi.0\n" {
		t.Fatalf("GET hi.0: %q, %v", body, err)
	}
	echo, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", in.Ports[needs.TCP]), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	echo.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(echo, "ping")
	buf := make([]byte, 5)
	if _, err := echo.Read(buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("tcp echo: %q, %v", buf, err)
	}
	echo.Close()
	kids := m.ps(t)
	if len(kids) != 1 {
		t.Fatalf("master ps: %+v", kids)
	}
	b, _ := os.ReadFile(kids[0].Log)
	if !strings.Contains(string(b), "hi.0: socket activation: inherited tcp:http") {
		t.Errorf("hello did not log its inherited sockets:\n%s", b)
	}

	l.mustCLI(t, "need", "rm", "hi")
	waitFor(t, 20*time.Second, "hi.0 to go", func() bool { return len(m.ps(t)) == 0 })
	for _, port := range in.Ports {
		ln, err := bindLoopback(port)
		if err != nil {
			t.Errorf("port %d after need rm: %v", port, err)
			continue
		}
		ln.Close()
		if m.quarantineLogged(port) {
			t.Errorf("port %d was quarantined after a clean stop", port)
		}
	}
}
