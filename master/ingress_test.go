package master_test

import (
	"bufio"
	"errors"
	"fmt"
	stdmaps "maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/lan"
	"berth/master"
	"berth/needs"
	"berth/pipes"
)

// openIngressMaster opens a master named name whose ingress address is
// ingressAddr; Cleanup closes it.
func openIngressMaster(t *testing.T, lanAddr, name, ingressAddr string) *master.Agent {
	t.Helper()
	cfg := testConfig(t, lanAddr)
	cfg.Name = name
	cfg.IngressAddress = ingressAddr
	return openAgent(t, cfg)
}

// hit opens one connection to addr and returns the line the instance
// behind it wrote (its name).
func hit(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w (got %q)", addr, err, line)
	}
	return strings.TrimSpace(line), nil
}

// spread makes n connections to addr and counts them by instance; any
// failure fails the test.
func spread(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		name, err := hit(addr)
		if err != nil {
			t.Fatalf("connection %d of %d through %s: %v", i+1, n, addr, err)
		}
		got[name]++
	}
	return got
}

// childCPU is the CPU of a's child instance from its last heartbeat, or -1
// before one.
func childCPU(a *master.Agent, instance string) float64 {
	for _, k := range a.Children() {
		if k.Instance == instance && k.Stats != nil {
			return k.Stats.CPUPercent
		}
	}
	return -1
}

// wantEven fails unless every instance got exactly each connections.
func wantEven(t *testing.T, through string, got map[string]int, instances []string, each int) {
	t.Helper()
	want := map[string]int{}
	for _, in := range instances {
		want[in] = each
	}
	if !stdmaps.Equal(got, want) {
		t.Fatalf("through %s: %v, want %d to each of %v", through, got, each, instances)
	}
}

// ingressOf returns what the lanmanager shows of master's ingress port.
func ingressOf(t *testing.T, c *lan.Client, master, need string, port int) (needs.IngressPort, bool) {
	ms, err := c.Masters(t.Context())
	if err != nil {
		return needs.IngressPort{}, false
	}
	for _, m := range ms {
		if m.Name != master {
			continue
		}
		for _, p := range m.Ingress {
			if p.Need == need && p.Port == port {
				return p, true
			}
		}
	}
	return needs.IngressPort{}, false
}

// waitReady waits until the agents run want children of need between
// them, all ready (listening), and the mirrors hold want running.
func waitReady(t *testing.T, c *lan.Client, need string, want int, agents ...*master.Agent) {
	t.Helper()
	waitMirror(t, c, need, want, agents...)
	waitFor(t, 20*time.Second, fmt.Sprintf("%d children of %s ready", want, need), func() bool {
		n := 0
		for _, a := range agents {
			for _, k := range a.Children() {
				if kn, _, _ := needs.ParseInstanceName(k.Instance); kn != need {
					continue
				}
				if !k.Ready {
					return false
				}
				n++
			}
		}
		return n == want
	})
}

func names(need string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, need+"."+strconv.Itoa(i))
	}
	return out
}

// TestIngressTwoMasters: a need with 3 instances and an ingress port P is
// reached through either master's ingress address (127.0.0.2:P and
// 127.0.0.3:P); round-robin spreads exactly; killing an instance loses no
// new connection; the ingress keeps serving while the lanmanager is
// closed, and follows a scale-up once a new one is back on the same
// address and data.
func TestIngressTwoMasters(t *testing.T) {
	dir := t.TempDir()
	srv := openLanAt(t, "127.0.0.1:0", dir)
	addr := srv.Addr()
	c := &lan.Client{Addr: addr}
	a1 := openIngressMaster(t, addr, "m1", "127.0.0.2")
	a2 := openIngressMaster(t, addr, "m2", "127.0.0.3")
	agents := []*master.Agent{a1, a2}
	waitFor(t, 10*time.Second, "both masters to link", func() bool { return a1.Linked() && a2.Linked() })

	port := freeports.Port(t)
	exe, _ := os.Executable()
	n := 3
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.TCP}, Ingress: []needs.Ingress{{Protocol: needs.TCP, Port: port}}}); err != nil {
		t.Fatal(err)
	}
	ingresses := []string{net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), net.JoinHostPort("127.0.0.3", strconv.Itoa(port))}
	waitFor(t, 10*time.Second, "both masters to report the ingress open", func() bool {
		p1, ok1 := ingressOf(t, c, "m1", "web", port)
		p2, ok2 := ingressOf(t, c, "m2", "web", port)
		return ok1 && ok2 && p1.Open && p2.Open && p1.Protocol == needs.TCP
	})
	waitReady(t, c, "web", 3, agents...)
	for _, in := range ingresses {
		wantEven(t, in, spread(t, in, 30), names("web", 3), 10)
	}

	// Kill one instance: every new connection still gets an answer (a
	// refused dial goes to another instance), and the mirrors drop it.
	var victim struct {
		a     *master.Agent
		pid   int
		alloc string
	}
	for _, a := range agents {
		for _, k := range a.Children() {
			if k.Instance == "web.1" {
				victim.a, victim.pid, victim.alloc = a, k.PID, k.Alloc
			}
		}
	}
	if victim.a == nil {
		t.Fatal("web.1 runs on no master")
	}
	killed := time.Now()
	if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until its sockets are closed, the kernel still completes handshakes
	// on its listener and then resets them: those are its own connections,
	// lost with it. Its master reaps it once every thread has exited, and
	// so every socket is closed (a zombie leader is not enough: its other
	// threads may still hold the descriptor table). From then on its port
	// refuses.
	waitFor(t, 5*time.Second, "web.1's process reaped", func() bool {
		return !slices.ContainsFunc(victim.a.Children(), func(k pipes.ChildInfo) bool { return k.Alloc == victim.alloc })
	})
	gone := time.Since(killed)
	conns, dropped := 0, time.Duration(0)
	for dropped == 0 || conns < 60 {
		if time.Since(killed) > 20*time.Second {
			t.Fatalf("web.1 still in the mirrors 20s after its kill (%d connections made)", conns)
		}
		for _, in := range ingresses {
			if _, err := hit(in); err != nil {
				t.Fatalf("connection %d through %s %s after the kill: %v", conns+1, in, time.Since(killed), err)
			}
			conns++
		}
		if dropped == 0 && !slices.ContainsFunc(agents, func(a *master.Agent) bool { return holdsAlloc(a, "web", victim.alloc) }) {
			dropped = time.Since(killed)
		}
	}
	t.Logf("web.1 killed: process gone after %s, out of both mirrors after %s; %d connections through the ingress, none lost", gone, dropped, conns)
	waitReady(t, c, "web", 3, agents...) // web.1 again, under a new allocation
	for _, in := range ingresses {
		wantEven(t, in, spread(t, in, 30), names("web", 3), 10)
	}

	// Connections held open through the ingress must outlive the
	// lanmanager's absence and the relink: the proxies are updated, never
	// restarted.
	var held []net.Conn
	for _, in := range ingresses {
		conn, err := net.DialTimeout("tcp", in, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
			t.Fatalf("held connection through %s: %v", in, err)
		}
		held = append(held, conn)
	}

	// The lanmanager goes: the ingress keeps serving the last set.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both links down", func() bool { return !a1.Linked() && !a2.Linked() })
	for _, in := range ingresses {
		wantEven(t, in, spread(t, in, 30), names("web", 3), 10)
	}

	// It comes back: the masters re-link and follow a scale-up.
	srv = openLanAt(t, addr, dir)
	waitFor(t, 20*time.Second, "both masters to re-link", func() bool { return a1.Linked() && a2.Linked() })
	if _, err := c.Scale(t.Context(), "web", 4); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "web", 4, agents...)
	for _, in := range ingresses {
		wantEven(t, in, spread(t, in, 40), names("web", 4), 10)
	}
	for i, conn := range held {
		// Still open: a read waits for its deadline rather than meeting
		// the end of a connection closed with its proxy.
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection held through %s across the relink: %v, want it still open", ingresses[i], err)
		}
	}
	waitFor(t, 10*time.Second, "the new lanmanager to show both ingress ports open", func() bool {
		p1, ok1 := ingressOf(t, c, "m1", "web", port)
		p2, ok2 := ingressOf(t, c, "m2", "web", port)
		return ok1 && ok2 && p1.Open && p2.Open
	})
	_ = srv
}

// holdsAlloc reports whether a's mirror lists alloc among need's running
// instances.
func holdsAlloc(a *master.Agent, need, alloc string) bool {
	_, set := a.Mirror().Need(need)
	return slices.ContainsFunc(set, func(s pipes.Service) bool { return s.Alloc == alloc })
}

// TestIngressPortTaken: a port the master cannot open is reported, with
// its error, in master ls, and opens once freed; removing the need closes
// it.
func TestIngressPortTaken(t *testing.T) {
	srv := openLanAt(t, "127.0.0.1:0", t.TempDir())
	c := &lan.Client{Addr: srv.Addr()}
	a := openIngressMaster(t, srv.Addr(), "m1", "127.0.0.2")
	waitFor(t, 10*time.Second, "the master to link", a.Linked)

	port := freeports.Port(t)
	addr := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	squatter, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	exe, _ := os.Executable()
	n := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "api", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.TCP}, Ingress: []needs.Ingress{{Protocol: needs.TCP, Port: port}}, Balance: "least-conn"}); err != nil {
		t.Fatal(err)
	}
	var shown needs.IngressPort
	waitFor(t, 10*time.Second, "the port reported shut", func() bool {
		p, ok := ingressOf(t, c, "m1", "api", port)
		shown = p
		return ok && !p.Open && p.Error != ""
	})
	if !strings.Contains(shown.Error, "address already in use") || !strings.Contains(shown.Error, addr) {
		t.Errorf("ingress error %q, want the address and \"address already in use\"", shown.Error)
	}
	waitReady(t, c, "api", 1, a)

	squatter.Close()
	freed := time.Now()
	waitFor(t, 40*time.Second, "the port open once freed", func() bool {
		p, ok := ingressOf(t, c, "m1", "api", port)
		return ok && p.Open && p.Error == ""
	})
	t.Logf("ingress open %s after the port was freed", time.Since(freed).Round(time.Millisecond))
	if got, err := hit(addr); err != nil || got != "api.0" {
		t.Fatalf("through the ingress: %q, %v; want api.0", got, err)
	}

	if err := c.RemoveNeed(t.Context(), "api"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the port closed and out of the report", func() bool {
		if _, ok := ingressOf(t, c, "m1", "api", port); ok {
			return false
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
		return true
	})
}

// TestIngressResource: with --balance resource, new connections go to the
// instance whose heartbeats report less CPU: hot.0 burns a core, hot.1
// idles, and hot.1 gets (nearly) every connection, where round-robin would
// split them.
func TestIngressResource(t *testing.T) {
	srv, c := newLan(t)
	a := openIngressMaster(t, srv.Addr(), "m1", "127.0.0.4")
	waitFor(t, 10*time.Second, "the master to link", a.Linked)
	port := freeports.Port(t)
	exe, _ := os.Executable()
	n := 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "hot", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.TCP}, Env: map[string]string{"AGENT_TEST_BURN": "hot.0"},
		Ingress: []needs.Ingress{{Protocol: needs.TCP, Port: port}}, Balance: "resource"}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "hot", 2, a)
	// The proxy gets the figures within a second (statsEvery).
	wantAvoidsHot(t, a, net.JoinHostPort("127.0.0.4", strconv.Itoa(port)))

	// With --balance-weights cpu=0,heap=0 the CPU does not count: the busy
	// cold.0 gets its share (ties go round).
	port2 := freeports.Port(t)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "cold", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.TCP}, Env: map[string]string{"AGENT_TEST_BURN": "cold.0"},
		Ingress: []needs.Ingress{{Protocol: needs.TCP, Port: port2}}, Balance: "resource", BalanceWeights: "cpu=0,heap=0"}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "cold", 2, a)
	waitFor(t, 20*time.Second, "cold.0's heartbeats to show it busy", func() bool { return childCPU(a, "cold.0") > 30 })
	addr2 := net.JoinHostPort("127.0.0.4", strconv.Itoa(port2))
	waitFor(t, 20*time.Second, "the cold ingress to answer", func() bool { _, err := hit(addr2); return err == nil })
	if got := spread(t, addr2, 20); got["cold.0"] < 5 {
		t.Errorf("with cpu=0,heap=0 20 connections went %v: the CPU should not count", got)
	}
}

// TestIngressResourceAcrossMasters: a master that runs none of a need's
// instances scores them by the heartbeats their own master shares through
// the lanmanager (loads frames): m2's ingress keeps away from hot.0,
// which burns a core on m1. Without the figures both instances would
// score alike (no connections) and share the connections evenly.
func TestIngressResourceAcrossMasters(t *testing.T) {
	srv, c := newLan(t)
	a := openIngressMaster(t, srv.Addr(), "m1", "127.0.0.4")
	waitFor(t, 10*time.Second, "m1 to link", a.Linked)
	port := freeports.Port(t)
	exe, _ := os.Executable()
	n := 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "hot", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.TCP}, Env: map[string]string{"AGENT_TEST_BURN": "hot.0"},
		Ingress: []needs.Ingress{{Protocol: needs.TCP, Port: port}}, Balance: "resource"}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "hot", 2, a)
	// Both run on m1; m2 links after them and runs none.
	b := openIngressMaster(t, srv.Addr(), "m2", "127.0.0.6")
	waitMirror(t, c, "hot", 2, b)
	if len(b.Children()) != 0 {
		t.Fatalf("m2 runs %d children, want none", len(b.Children()))
	}
	// m1 sends the figures within a second, the lanmanager passes them on
	// within another, and m2's proxy gets them within a third.
	wantAvoidsHot(t, a, net.JoinHostPort("127.0.0.6", strconv.Itoa(port)))
}

// wantAvoidsHot waits until the heartbeats of hot.0, a child of a, show it
// busy and hot.1's idle, then until the ingress at addr sends hot.1 four
// connections in a row, and fails unless hot.0 gets at most 4 of the next
// 20.
func wantAvoidsHot(t *testing.T, a *master.Agent, addr string) {
	t.Helper()
	cpu := func(instance string) float64 { return childCPU(a, instance) }
	waitFor(t, 20*time.Second, "hot.0's heartbeats to show it busy and hot.1's idle", func() bool {
		return cpu("hot.0") > 30 && cpu("hot.1") >= 0 && cpu("hot.1") < cpu("hot.0")/2
	})
	waitFor(t, 20*time.Second, "the ingress at "+addr+" to prefer hot.1", func() bool {
		return spread(t, addr, 4)["hot.1"] == 4
	})
	got := spread(t, addr, 20)
	t.Logf("20 connections through %s: %v (hot.0 at %.0f%% CPU, hot.1 at %.0f%%)", addr, got, cpu("hot.0"), cpu("hot.1"))
	if got["hot.0"] > 4 {
		t.Errorf("20 connections through %s went %v: the busy hot.0 got more than 4", addr, got)
	}
}
