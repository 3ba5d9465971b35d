package lan_test

import (
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// masterEvent matches an event of kind about the master named name.
func masterEvent(kind, name string) func(lan.Event) bool {
	return func(e lan.Event) bool { return e.Kind == kind && e.Master != nil && e.Master.Name == name }
}

// placedOn reports whether the only service is web.0 under alloc on master.
func placedOn(t *testing.T, c *lan.Client, alloc, master string) bool {
	t.Helper()
	svcs := services(t, c)
	return len(svcs) == 1 && svcs[0].Name == "web.0" && svcs[0].Alloc == alloc && svcs[0].Master == master &&
		svcs[0].State == needs.Running
}

// TestLivenessSilentMasterLostAtTTL: a master whose link stays up but that
// sends nothing (a partition) is kept one tick before the TTL and lost at
// the TTL: its link is closed and its instance placed again at once.
func TestLivenessSilentMasterLostAtTTL(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m}, 1)["web.0"]
	t0 := clock.Now() // the fake clock has not moved: every frame arrived at t0

	m.silent.Store(true)
	advanceTo(t, clock, t0.Add(ttl-time.Nanosecond), m) // the lanmanager pings the quiet master
	if !placedOn(t, c, g.Alloc, "m1") {
		t.Fatalf("one tick before the TTL: services %v, want web.0 still running on m1", services(t, c))
	}
	if e := waitMaster(t, c, "m1", func(*needs.Master) bool { return true }); !e.Connected || !e.LastSeen.Equal(t0) {
		t.Errorf("m1 one tick before the TTL = %+v, want connected, last seen %v", e, t0)
	}

	clock.Set(t0.Add(ttl))
	ev := waitEvent(t, events, 10*time.Second, "master.lost m1", masterEvent(lan.EventMasterLost, "m1"))
	if !strings.Contains(ev.Message, "not heard from for 5s") || !strings.Contains(ev.Message, "1 instance") {
		t.Errorf("master.lost message %q, want the TTL and the count", ev.Message)
	}
	pend := waitEvent(t, events, 10*time.Second, "web.0 pending", instanceEvent("web.0", needs.Pending))
	if in := pend.Instance; in.Alloc != "" || !strings.Contains(in.Reason, "master m1 lost") || in.Failures != 0 {
		t.Errorf("re-queued instance = %+v, want unplaced, m1 lost, no failure counted", in)
	}
	m.closed(10 * time.Second) // the lanmanager closed the silent link
}

// TestLivenessDroppedLinkLostTTLAfterLastHeard: a master that went quiet
// and whose link dropped later is lost TTL after it was last heard, not TTL
// after the drop.
func TestLivenessDroppedLinkLostTTLAfterLastHeard(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now, BidWindow: time.Hour})
	events := subscribe(t, srv, c)
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m1}, 1)["web.0"]
	m2 := dialMaster(t, srv, "", id2, "m2") // answers pings: the witness of placer passes
	t0 := clock.Now()

	m1.silent.Store(true)
	advanceTo(t, clock, t0.Add(3*time.Second), m2)
	m1.conn.Close()
	waitEvent(t, events, 10*time.Second, "master.disconnected m1", masterEvent(lan.EventMasterDown, "m1"))

	advanceTo(t, clock, t0.Add(ttl-time.Nanosecond), m2)
	if !placedOn(t, c, g.Alloc, "m1") {
		t.Fatalf("one tick before last heard + TTL: services %v, want web.0 still placed on m1", services(t, c))
	}
	if e := waitMaster(t, c, "m1", func(*needs.Master) bool { return true }); e.Connected || !e.LastSeen.Equal(t0) || e.Instances != 1 {
		t.Errorf("m1 = %+v, want disconnected, last seen %v, holding 1", e, t0)
	}

	clock.Set(t0.Add(ttl))
	waitEvent(t, events, 10*time.Second, "master.lost m1", masterEvent(lan.EventMasterLost, "m1"))
	m2.takeOffer("web.0")
	var g2 pipes.Grant
	m2.expect(pipes.TypeGrant, &g2)
	if g2.Alloc == g.Alloc {
		t.Errorf("re-placed under the old alloc %s", g.Alloc)
	}
}

// TestLivenessAfterRestart: after a restart of the lanmanager, a master
// that held instances has the TTL from start-up to come back.
func TestLivenessAfterRestart(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	cfg := lan.Config{DataDir: t.TempDir(), MasterTTL: ttl, Clock: clock.Now, BidWindow: time.Hour}
	srv, c := startServer(t, cfg)
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m1}, 1)["web.0"]
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Set(clock.Now().Add(time.Hour)) // down for an hour: far beyond the TTL
	start := clock.Now()
	srv, c = startServer(t, cfg)
	events := subscribe(t, srv, c)
	m2 := dialMaster(t, srv, "", id2, "m2")

	advanceTo(t, clock, start.Add(ttl-time.Nanosecond), m2)
	if !placedOn(t, c, g.Alloc, "m1") {
		t.Fatalf("one tick before start-up + TTL: services %v, want web.0 still placed on m1", services(t, c))
	}
	clock.Set(start.Add(ttl))
	ev := waitEvent(t, events, 10*time.Second, "master.lost m1", masterEvent(lan.EventMasterLost, "m1"))
	if !strings.Contains(ev.Message, "not back within 5s") {
		t.Errorf("master.lost message %q, want it to say m1 did not come back", ev.Message)
	}
	m2.takeOffer("web.0")
}

// TestLivenessPingKeepsQuietMasterAlive: a master that never pings by
// itself but answers the lanmanager's pings is never lost.
func TestLivenessPingKeepsQuietMasterAlive(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m}, 1)["web.0"]
	t0 := clock.Now()
	// Ten TTLs in steps of two heartbeats; m1 only answers pings.
	for i := 1; i <= 25; i++ {
		advanceTo(t, clock, t0.Add(time.Duration(i)*2*time.Second), m)
	}
	if !placedOn(t, c, g.Alloc, "m1") {
		t.Fatalf("after 10 TTLs of pongs only: services %v, want web.0 on m1", services(t, c))
	}
	if n := m.pings.Load(); n < 25 {
		t.Errorf("m1 got %d pings, want at least 25", n)
	}
	m.send(pipes.TypePing, nil)
	m.expect(pipes.TypePong, nil) // the link is up, and nothing else was sent to m1
	for {
		select {
		case e := <-events:
			if e.Kind == lan.EventMasterLost || e.Kind == lan.EventMasterDown {
				t.Fatalf("event %s %s while m1 answered every ping", e.Kind, e.Message)
			}
			continue
		default:
		}
		break
	}
}
