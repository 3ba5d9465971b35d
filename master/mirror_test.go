package master_test

import (
	"fmt"
	stdmaps "maps"
	"os"
	"slices"
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

// openLanAt starts an in-process lanmanager on addr with its data in dir.
func openLanAt(t *testing.T, addr, dir string) *lan.Server {
	t.Helper()
	srv, err := lan.Open(t.Context(), lan.Config{Listen: addr, DataDir: dir, Logger: testLogger(t),
		BidWindow: 200 * time.Millisecond, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// runningSet is the lanmanager's running set of need as the mirror shows
// it: "instance alloc master address ports", sorted.
func runningSet(t *testing.T, c *lan.Client, need string) []string {
	t.Helper()
	ins, err := c.Services(t.Context())
	if err != nil {
		return nil
	}
	var out []string
	for _, in := range ins {
		if in.Need == need && in.State == needs.Running && !in.Removing {
			out = append(out, fmt.Sprint(in.Name, in.Alloc, in.Master, in.Address, in.Ports))
		}
	}
	slices.Sort(out)
	return out
}

func mirrored(m *master.Mirror, need string) []string {
	_, set := m.Need(need)
	var out []string
	for _, s := range set {
		out = append(out, fmt.Sprint(s.Instance, s.Alloc, s.Master, s.Address, s.Ports))
	}
	slices.Sort(out)
	return out
}

// waitMirror waits until every agent's mirror of need holds want
// instances, the same the lanmanager lists as running.
func waitMirror(t *testing.T, c *lan.Client, need string, want int, agents ...*master.Agent) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("mirrors of %s to hold the %d running", need, want), func() bool {
		set := runningSet(t, c, need)
		if len(set) != want {
			return false
		}
		for _, a := range agents {
			if !slices.Equal(mirrored(a.Mirror(), need), set) {
				return false
			}
		}
		return true
	})
}

// TestMirrorFollowsRunningSet: two masters' mirrors follow scale up and
// down; while the lanmanager is stopped they keep the last set; once it is
// back they catch up with what changed meanwhile (a child that died while
// it was down), and follow later changes.
func TestMirrorFollowsRunningSet(t *testing.T) {
	dir := t.TempDir()
	srv := openLanAt(t, "127.0.0.1:0", dir)
	addr := srv.Addr()
	c := &lan.Client{Addr: addr}
	a1 := openAgent(t, testConfig(t, addr))
	cfg2 := testConfig(t, addr)
	cfg2.Name = "m2"
	cfg2.IngressAddress = "127.0.0.2" // so that both can open the ingress port
	a2 := openAgent(t, cfg2)
	waitFor(t, 10*time.Second, "both masters to link", func() bool { return a1.Linked() && a2.Linked() })

	exe, _ := os.Executable()
	n := 2
	// Masters mirror only the needs with ingress.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.HTTP}, Ingress: []needs.Ingress{{Protocol: needs.HTTP, Port: freeports.Port(t)}}}); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, c, "svc", 2, a1, a2)
	if _, err := c.Scale(t.Context(), "svc", 4); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, c, "svc", 4, a1, a2)
	if _, err := c.Scale(t.Context(), "svc", 1); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, c, "svc", 1, a1, a2)
	// Let the stopping ones go, so that only svc.0 runs.
	waitFor(t, 20*time.Second, "3 children stopped", func() bool { return len(a1.Children())+len(a2.Children()) == 1 })

	// The lanmanager stops: the mirrors keep the last set.
	rev1, before1 := a1.Mirror().Snapshot()
	rev2, _ := a2.Mirror().Snapshot()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both links down", func() bool { return !a1.Linked() && !a2.Linked() })
	for _, a := range []*master.Agent{a1, a2} {
		rev, set := a.Mirror().Snapshot()
		if (rev != rev1 && rev != rev2) || len(set["svc"]) != 1 {
			t.Fatalf("mirror after the lanmanager stopped: rev %d, %v; want rev %d or %d with 1 svc", rev, set, rev1, rev2)
		}
	}
	// Meanwhile the child dies.
	owner := a1
	if len(a2.Children()) == 1 {
		owner = a2
	}
	kid := owner.Children()[0]
	if err := syscall.Kill(kid.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the child gone", func() bool { return len(owner.Children()) == 0 })
	if _, set := a1.Mirror().Snapshot(); !stdmaps.EqualFunc(set, before1, func(a, b []pipes.Service) bool {
		return slices.EqualFunc(a, b, func(x, y pipes.Service) bool { return x.Alloc == y.Alloc })
	}) {
		t.Fatalf("mirror changed while the lanmanager was down: %v, was %v", set, before1)
	}

	// Back on the same address: the masters re-link, report the exit, the
	// instance runs again under a new allocation, and the mirrors follow.
	srv = openLanAt(t, addr, dir)
	waitFor(t, 20*time.Second, "both masters to re-link", func() bool { return a1.Linked() && a2.Linked() })
	waitFor(t, 30*time.Second, "svc.0 running under a new allocation in both mirrors", func() bool {
		set := runningSet(t, c, "svc")
		if len(set) != 1 || strings.Contains(set[0], kid.Alloc) {
			return false
		}
		return slices.Equal(mirrored(a1.Mirror(), "svc"), set) && slices.Equal(mirrored(a2.Mirror(), "svc"), set)
	})
	if rev := a1.Mirror().Rev(); rev <= rev1 {
		t.Errorf("mirror revision %d after the restart, want more than %d", rev, rev1)
	}
	if _, err := c.Scale(t.Context(), "svc", 3); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, c, "svc", 3, a1, a2)
	if err := c.RemoveNeed(t.Context(), "svc"); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, c, "svc", 0, a1, a2)
	_ = srv
}

// TestMirrorRefusesBadServices: a services frame that fails validation is
// answered with an invalid error naming the field and changes nothing; a
// diff against another revision drops the link, and the next link's full
// set replaces the mirror.
func TestMirrorRefusesBadServices(t *testing.T) {
	f := newFakeLan(t)
	a := openAgent(t, testConfig(t, f.addr))
	l := f.next(t, 10*time.Second)
	if !l.hello.Services {
		t.Fatal("hello does not ask for services")
	}
	msgs := l.recvAll(true)
	send := func(l *fakeLink, id uint64, s pipes.Services) {
		t.Helper()
		if err := l.conn.SendBody(pipes.TypeServices, id, &s); err != nil {
			t.Fatal(err)
		}
	}
	expectError := func(msgs <-chan *pipes.Msg, id uint64, want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("link closed before the error for %d", id)
				}
				if m.Type != pipes.TypeError || m.ID != id {
					continue
				}
				if m.Error == nil || !strings.Contains(m.Error.Message, want) {
					t.Fatalf("error %+v, want one containing %q", m.Error, want)
				}
				return
			case <-timeout:
				t.Fatalf("no error answer for %d", id)
			}
		}
	}
	l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 100, TTLMS: 2000})
	web := func(i int, alloc string) pipes.Service {
		return pipes.Service{Need: "web", Instance: fmt.Sprintf("web.%d", i), Alloc: alloc, Master: "m9", Address: "10.0.0.9",
			Ports: map[needs.Protocol]int{needs.HTTP: 16000 + i}}
	}
	send(l, 1, pipes.Services{Rev: 10, Full: true, Parts: 1, Instances: []pipes.Service{web(0, "alloc0000")}})
	waitFor(t, 5*time.Second, "rev 10", func() bool { return a.Mirror().Rev() == 10 })
	changed := a.Mirror().Changed()

	bad := web(1, "alloc0001")
	bad.Ports[needs.HTTP] = 70000
	send(l, 2, pipes.Services{Rev: 11, Base: 10, Parts: 1, Instances: []pipes.Service{bad}})
	expectError(msgs, 2, "services: instances[0]: ports.http: 70000 is outside 1-65535")
	if rev, set := a.Mirror().Snapshot(); rev != 10 || len(set["web"]) != 1 || set["web"][0].Alloc != "alloc0000" {
		t.Fatalf("a refused frame changed the mirror: rev %d, %v", rev, set)
	}
	select {
	case <-changed:
		t.Fatal("a refused frame signalled a change")
	default:
	}
	if !a.Linked() {
		t.Fatal("a refused frame dropped the link")
	}

	// Two parts: applied once both are in.
	send(l, 0, pipes.Services{Rev: 12, Base: 10, Part: 0, Parts: 2, Instances: []pipes.Service{web(2, "alloc0002")}})
	if rev := a.Mirror().Rev(); rev != 10 {
		t.Fatalf("rev %d after part 0 of 2, want 10", rev)
	}
	send(l, 0, pipes.Services{Rev: 12, Base: 10, Part: 1, Parts: 2, Instances: []pipes.Service{web(1, "alloc0001")}, Removed: []string{"web.7"}})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled for rev 12")
	}
	if rev, set := a.Mirror().Snapshot(); rev != 12 || len(set["web"]) != 3 || set["web"][1].Instance != "web.1" {
		t.Fatalf("after rev 12: rev %d, %v; want web.0-2", rev, set)
	}
	send(l, 0, pipes.Services{Rev: 13, Base: 12, Parts: 1, Instances: []pipes.Service{web(0, "alloc0010")}, Removed: []string{"web.2"}})
	waitFor(t, 5*time.Second, "rev 13", func() bool { return a.Mirror().Rev() == 13 })
	if _, set := a.Mirror().Need("web"); len(set) != 2 || set[0].Alloc != "alloc0010" || set[1].Instance != "web.1" {
		t.Fatalf("after rev 13: %v; want web.0 under alloc0010 and web.1", set)
	}

	// A diff against a revision the mirror is not at: the link is dropped,
	// the mirror kept until the next link's full set.
	send(l, 3, pipes.Services{Rev: 15, Base: 14, Parts: 1, Removed: []string{"web.0"}})
	expectError(msgs, 3, "services diff rev 15 is against 14, the mirror is at 13")
	l2 := f.next(t, 10*time.Second)
	if rev := a.Mirror().Rev(); rev != 13 {
		t.Fatalf("rev %d after the dropped link, want 13 kept", rev)
	}
	l2.recvAll(true)
	l2.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 100, TTLMS: 2000})
	send(l2, 0, pipes.Services{Rev: 3, Full: true, Parts: 1, Instances: []pipes.Service{web(5, "alloc0005")}})
	waitFor(t, 5*time.Second, "the new link's full set", func() bool { return a.Mirror().Rev() == 3 })
	if _, set := a.Mirror().Need("web"); len(set) != 1 || set[0].Instance != "web.5" {
		t.Fatalf("after the full set: %v, want web.5 alone", set)
	}
}
