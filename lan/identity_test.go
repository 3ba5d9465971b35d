package lan_test

import (
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// helloAs connects a fake master that says hello with the given identity.
func helloAs(t *testing.T, srv *lan.Server, id, boot, name, addr string) *fakeMaster {
	t.Helper()
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatalf("dial /v1/link: %v", err)
	}
	m := newFakeMaster(t, conn, id, name)
	m.send(pipes.TypeHello, &pipes.Hello{ID: id, Boot: boot, Name: name, Address: addr, Version: "test"})
	return m
}

// refused expects the answer to a hello to be an error naming the copy,
// then the link to close.
func (m *fakeMaster) refused(want ...string) {
	m.t.Helper()
	msg := m.next(10 * time.Second)
	if msg.Type != pipes.TypeError || msg.Error == nil {
		m.t.Fatalf("master %s: got %s (%s), want an error refusing the hello", m.name, msg.Type, msg.Body)
	}
	for _, w := range want {
		if !strings.Contains(msg.Error.Message, w) {
			m.t.Errorf("master %s: refusal %q does not say %q", m.name, msg.Error.Message, w)
		}
	}
	m.closed(10 * time.Second)
}

// TestIdentityCopiedRuntimeDirectory is the repro: a second master
// started with a copy of the first one's master.id (a cloned VM image) used
// to be taken for the first one reconnecting, again and again, with every
// instance run twice. Now the copy is refused with an error that says what
// happened, and the first master keeps its link and its instances.
func TestIdentityCopiedRuntimeDirectory(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: time.Second})
	m1 := helloAs(t, srv, id1, "boot-one", "m1", "127.0.0.1")
	m1.expect(pipes.TypeWelcome, nil)
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m1}, 1)["web.0"]

	for _, copy := range []struct{ name, addr string }{{"m2", "127.0.0.2"}, {"m1", "127.0.0.3"}, {"m9", "127.0.0.1"}} {
		cp := helloAs(t, srv, id1, "boot-copy", copy.name, copy.addr)
		cp.refused("master id "+id1+" is already connected as m1 from 127.0.0.1", "runtime directory copied", "delete master.id")
	}
	// The first master is untouched: still connected, still running web.0,
	// and its link still carries frames.
	if !placedOn(t, c, g.Alloc, "m1") {
		t.Fatalf("after the copies: services %v, want web.0 still on m1", services(t, c))
	}
	ms, err := c.Masters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Name != "m1" || !ms[0].Connected || ms[0].Address != "127.0.0.1" {
		t.Fatalf("masters after the copies = %+v, want only m1, connected from 127.0.0.1", ms)
	}
	m1.send(pipes.TypePing, nil)
	m1.expect(pipes.TypePong, nil)
}

// TestIdentitySameProcessNewLink: the same master (same boot nonce) on a
// new link wins over its old link, as before.
func TestIdentitySameProcessNewLink(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: time.Second})
	old := helloAs(t, srv, id1, "boot-one", "m1", "127.0.0.1")
	old.expect(pipes.TypeWelcome, nil)
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{old}, 1)["web.0"]

	again := helloAs(t, srv, id1, "boot-one", "m1", "127.0.0.5") // its address may even have changed
	again.expect(pipes.TypeWelcome, nil)
	old.closed(10 * time.Second)
	waitMaster(t, c, "m1", func(m *needs.Master) bool { return m.Connected && m.Address == "127.0.0.5" })
	if g.Alloc == "" {
		t.Fatal("no grant")
	}
}

// TestIdentityRestartOnSameMachine: a master restarted on the same machine
// (new boot nonce, same name and address) whose old link is still open is
// refused while the old link is alive, and admitted once the old link has
// been silent for two heartbeats (a crash that sent no FIN).
func TestIdentityRestartOnSameMachine(t *testing.T) {
	const ttl = 5 * time.Second // heartbeat 1 s
	clock := newFakeClock()
	srv, _ := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now, BidWindow: time.Hour})
	old := helloAs(t, srv, id1, "boot-one", "m1", "127.0.0.1")
	old.expect(pipes.TypeWelcome, nil)
	t0 := clock.Now()

	helloAs(t, srv, id1, "boot-two", "m1", "127.0.0.1").refused("already connected as m1")

	old.silent.Store(true)
	advanceTo(t, clock, t0.Add(2*time.Second), old) // two heartbeats of silence
	restarted := helloAs(t, srv, id1, "boot-two", "m1", "127.0.0.1")
	restarted.expect(pipes.TypeWelcome, nil)
	old.closed(10 * time.Second)
}

// TestIdentityCopyWhileOriginalAway: a copy that connects while the
// original's link is down is refused until the original is lost (TTL), so
// it cannot take over the instances of a master that is only reconnecting.
func TestIdentityCopyWhileOriginalAway(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now, BidWindow: time.Hour})
	orig := helloAs(t, srv, id1, "boot-one", "m1", "127.0.0.1")
	orig.expect(pipes.TypeWelcome, nil)
	t0 := clock.Now()
	orig.conn.Close()
	waitMaster(t, c, "m1", func(m *needs.Master) bool { return !m.Connected })

	clock.Set(t0.Add(ttl - time.Millisecond))
	helloAs(t, srv, id1, "boot-copy", "m2", "127.0.0.2").refused("was connected", "as m1 from 127.0.0.1")

	// The original itself (restarted: new boot, same name and address) is
	// welcome at once.
	back := helloAs(t, srv, id1, "boot-three", "m1", "127.0.0.1")
	back.expect(pipes.TypeWelcome, nil)
}
