package lan_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

const (
	id1 = "0123456789abcdef"
	id2 = "fedcba9876543210"
)

func addWeb(t *testing.T, c *lan.Client, n int) {
	t.Helper()
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"/bin/web"},
		Instances: intp(n), Protocols: []needs.Protocol{needs.HTTP}}); err != nil {
		t.Fatalf("AddNeed: %v", err)
	}
}

// TestLinkLifecycle walks one instance through offer, bid, grant, started,
// approval, a failing exit, back-off and a new offer.
func TestLinkLifecycle(t *testing.T) {
	srv, c := newTestServer(t, "")
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	waitEvent(t, events, 5*time.Second, "master.connected", func(e lan.Event) bool {
		return e.Kind == lan.EventMasterUp && e.Master != nil && e.Master.ID == id1 && e.Master.Name == "m1"
	})

	addWeb(t, c, 1)
	o := m.takeOffer("web.0")
	if o.Need.Name != "web" || len(o.Need.Protocols) != 1 || o.Need.Protocols[0] != needs.HTTP || o.Round == 0 {
		t.Errorf("offer = %+v, want web with http", o)
	}
	var g pipes.Grant
	m.expect(pipes.TypeGrant, &g)
	if g.Instance != "web.0" || g.Alloc == "" || g.Need.Name != "web" {
		t.Fatalf("grant = %+v, want web.0 with an alloc", g)
	}
	st := getNeed(t, c, "web")
	if in := instance(st, "web.0"); in == nil || in.State != needs.Starting || in.Alloc != g.Alloc || in.Master != "m1" || in.MasterID != id1 {
		t.Errorf("after grant: %+v, want starting on m1 under %s", in, g.Alloc)
	}

	port := listen(t)
	m.send(pipes.TypeStarted, startedFor(g, port))
	var running *needs.Instance
	waitFor(t, 10*time.Second, func() bool {
		for _, in := range services(t, c) {
			if in.Name == "web.0" && in.State == needs.Running {
				running = in
				return true
			}
		}
		return false
	})
	if running.Alloc != g.Alloc || running.Ports[needs.HTTP] != port || running.PID != os.Getpid() ||
		running.Address != "127.0.0.1" || running.Master != "m1" || running.StartedAt.IsZero() {
		t.Errorf("running service = %+v, want alloc %s, http port %d on m1", running, g.Alloc, port)
	}
	var a pipes.AllocRef
	m.expect(pipes.TypeApprove, &a)
	if a.Alloc != g.Alloc {
		t.Errorf("approve for %q, want %q", a.Alloc, g.Alloc)
	}
	ms, err := c.Masters(t.Context())
	if err != nil || len(ms) != 1 || !ms[0].Connected || ms[0].Instances != 1 || ms[0].Name != "m1" {
		t.Errorf("Masters = %v, %v; want m1 connected with 1 instance", ms, err)
	}
	if st := getNeed(t, c, "web"); st.Running != 1 || st.Pending != 0 {
		t.Errorf("need status running %d pending %d, want 1/0", st.Running, st.Pending)
	}

	// The child exits with code 3: back-off, then a fresh offer.
	m.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: g.Instance, Code: 3})
	ev := waitEvent(t, events, 5*time.Second, "web.0 backoff", instanceEvent("web.0", needs.Backoff))
	in := ev.Instance
	if in.LastExit != "exit code 3" || in.NextAttempt.IsZero() || in.Alloc != "" || in.Failures != 1 || in.Restarts != 1 ||
		!strings.Contains(in.Reason, "exit code 3") {
		t.Errorf("backoff instance = %+v, want last_exit %q, next_attempt set, unplaced, 1 failure", in, "exit code 3")
	}
	if d := in.NextAttempt.Sub(in.Since); d < needs.BackoffMin-time.Millisecond || d > needs.BackoffMin+time.Second {
		t.Errorf("next attempt %v after the failure, want about %v", d, needs.BackoffMin)
	}
	for _, s := range services(t, c) {
		if s.Name == "web.0" {
			t.Errorf("backed-off instance still listed as a service: %+v", s)
		}
	}
	o2 := m.takeOffer("web.0")
	if o2.Round <= o.Round {
		t.Errorf("second offer round %d, want > %d", o2.Round, o.Round)
	}
	var g2 pipes.Grant
	m.expect(pipes.TypeGrant, &g2)
	if g2.Alloc == g.Alloc || g2.Instance != "web.0" {
		t.Fatalf("second grant = %+v, want a new alloc (old %s)", g2, g.Alloc)
	}
	got := instance(getNeed(t, c, "web"), "web.0")
	if got.LastExit != "exit code 3" || got.NextAttempt.IsZero() || got.State != needs.Starting {
		t.Errorf("after re-grant: %+v, want starting with last_exit kept", got)
	}

	// A report about the old allocation is stale: the master is told to
	// stop it, and the instance does not change.
	m.send(pipes.TypeStarted, startedFor(g, port))
	var stop pipes.Stop
	m.expect(pipes.TypeStop, &stop)
	if stop.Alloc != g.Alloc {
		t.Errorf("stop for %q, want the stale %q", stop.Alloc, g.Alloc)
	}
	m.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: g.Instance, Code: 1})
	m.send(pipes.TypePing, nil)
	m.expect(pipes.TypePong, nil) // the link is in order: the stale exit was handled first
	if got := instance(getNeed(t, c, "web"), "web.0"); got.State != needs.Starting || got.Alloc != g2.Alloc || got.Failures != 1 {
		t.Errorf("stale reports changed the instance: %+v", got)
	}
}

func TestLinkDuplicateName(t *testing.T) {
	srv, c := newTestServer(t, "")
	dialMaster(t, srv, "", id1, "m1")
	dup := connectMaster(t, srv, "", id2, "m1")
	msg := dup.next(10 * time.Second)
	if msg.Type != pipes.TypeError || msg.Error == nil {
		t.Fatalf("second m1 got %s (%s), want an error frame", msg.Type, msg.Body)
	}
	if !errors.Is(msg.Error, needs.ErrExists) || !strings.Contains(msg.Error.Message, "m1") {
		t.Errorf("refusal = %+v, want code exists naming m1", msg.Error)
	}
	dup.closed(10 * time.Second)
	ms, err := c.Masters(t.Context())
	if err != nil || len(ms) != 1 || ms[0].ID != id1 || !ms[0].Connected {
		t.Errorf("Masters = %v, %v; want only %s", ms, err, id1)
	}

	// A hello that does not validate is refused too.
	bad := connectMaster(t, srv, "", "short", "m2")
	if msg := bad.next(10 * time.Second); msg.Type != pipes.TypeError || !errors.Is(msg.Error, needs.ErrInvalid) {
		t.Errorf("bad hello got %s %+v, want an invalid error", msg.Type, msg.Error)
	}
	bad.closed(10 * time.Second)

	// The same id reconnecting replaces the old link.
	again := dialMaster(t, srv, "", id1, "m1")
	again.send(pipes.TypePing, nil)
	again.expect(pipes.TypePong, nil)
	ms, err = c.Masters(t.Context())
	if err != nil || len(ms) != 1 || ms[0].ID != id1 || !ms[0].Connected {
		t.Errorf("Masters after reconnect = %v, %v; want only %s", ms, err, id1)
	}
}

func TestLinkStartedUnknownAlloc(t *testing.T) {
	srv, c := newTestServer(t, "")
	m := dialMaster(t, srv, "", id1, "m1")
	for _, inst := range []string{"web.0", "nosuch.3"} {
		m.send(pipes.TypeStarted, &pipes.Started{Alloc: "0000deadbeef0000", Instance: inst, PID: os.Getpid(),
			Address: "127.0.0.1", StartedAt: time.Now()})
		var stop pipes.Stop
		m.expect(pipes.TypeStop, &stop)
		if stop.Alloc != "0000deadbeef0000" {
			t.Errorf("stop for %q, want the unknown alloc", stop.Alloc)
		}
	}
	// An invalid message is answered with an error and the link stays up.
	m.send(pipes.TypeStarted, &pipes.Started{Alloc: "BAD", Instance: "web.0", PID: 1})
	msg := m.next(10 * time.Second)
	if msg.Type != pipes.TypeError || !errors.Is(msg.Error, needs.ErrInvalid) {
		t.Errorf("invalid started got %s %+v, want an invalid error", msg.Type, msg.Error)
	}
	m.send(pipes.TypePing, nil)
	m.expect(pipes.TypePong, nil)
	if svcs := services(t, c); len(svcs) != 0 {
		t.Errorf("services = %v, want none", svcs)
	}
}

func TestLinkUnreachableRejected(t *testing.T) {
	srv, c := startServer(t, lan.Config{StartDeadline: time.Second})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	m.takeOffer("web.0")
	var g pipes.Grant
	m.expect(pipes.TypeGrant, &g)
	start := time.Now()
	m.send(pipes.TypeStarted, startedFor(g, deadPort(t)))

	var stop pipes.Stop
	m.expect(pipes.TypeStop, &stop)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("rejected after %v, before the 1s start deadline", d)
	}
	if stop.Alloc != g.Alloc || !strings.Contains(stop.Reason, "unreachable") || stop.GraceMS <= 0 {
		t.Errorf("stop = %+v, want alloc %s, a reason mentioning unreachable and a grace", stop, g.Alloc)
	}
	ev := waitEvent(t, events, 5*time.Second, "web.0 backoff", instanceEvent("web.0", needs.Backoff))
	if !strings.Contains(ev.Instance.Reason, "unreachable") || ev.Instance.Alloc != "" || ev.Instance.Failures != 1 {
		t.Errorf("rejected instance = %+v, want backoff, unreachable, unplaced", ev.Instance)
	}
	for _, s := range services(t, c) {
		if s.State == needs.Running {
			t.Errorf("unreachable instance approved: %+v", s)
		}
	}
	// It is offered again after its back-off.
	m.takeOffer("web.0")
}

// TestPlacementSpread checks that instances of one need are spread evenly
// over masters that both bid.
func TestPlacementSpread(t *testing.T) {
	// The bid window only closes rounds whose bids are late; both fake
	// masters answer at once, so a roomy window costs nothing and keeps a
	// slow (race-enabled) run from deciding on one bid.
	srv, c := startServer(t, lan.Config{BidWindow: time.Second})
	ms := []*fakeMaster{dialMaster(t, srv, "", id1, "m1"), dialMaster(t, srv, "", id2, "m2")}
	addWeb(t, c, 4)

	grants := map[string]int{} // master name → grants
	for _, g := range runAll(t, ms, 4) {
		grants[g.master]++
	}
	if grants["m1"] != 2 || grants["m2"] != 2 {
		t.Errorf("grants = %v, want 2 each", grants)
	}
	perMaster := map[string]int{}
	svcs := services(t, c)
	for _, s := range svcs {
		if s.State != needs.Running {
			t.Errorf("service %s is %s, want running", s.Name, s.State)
		}
		perMaster[s.Master]++
	}
	if len(svcs) != 4 || perMaster["m1"] != 2 || perMaster["m2"] != 2 {
		t.Errorf("services per master = %v (%d services), want 2 each", perMaster, len(svcs))
	}
	if st := getNeed(t, c, "web"); st.Running != 4 || st.Pending != 0 {
		t.Errorf("need running %d pending %d, want 4/0", st.Running, st.Pending)
	}
	masters, err := c.Masters(t.Context())
	if err != nil || len(masters) != 2 {
		t.Fatalf("Masters = %v, %v", masters, err)
	}
	for _, mm := range masters {
		if mm.Instances != 2 {
			t.Errorf("master %s holds %d instances, want 2", mm.Name, mm.Instances)
		}
	}
}

// placed is a grant as a fake master received it.
type placed struct {
	pipes.Grant
	master string
	port   int
}

// runAll plays the masters' side until n instances are approved: every
// offer is bid for, every grant is answered with a started report on a real
// listener. It returns the grants by instance.
func runAll(t *testing.T, ms []*fakeMaster, n int) map[string]placed {
	t.Helper()
	granted := map[string]placed{} // instance → grant
	allocs := map[string]string{}  // alloc → master name
	approved := map[string]bool{}  // alloc → approved
	handle := func(m *fakeMaster, msg *pipes.Msg, ok bool) {
		t.Helper()
		if !ok {
			t.Fatalf("master %s: link closed", m.name)
		}
		switch msg.Type {
		case pipes.TypeOffer:
			var o pipes.Offer
			if err := msg.Decode(&o); err != nil {
				t.Fatal(err)
			}
			m.send(pipes.TypeBid, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
		case pipes.TypeGrant:
			var g pipes.Grant
			if err := msg.Decode(&g); err != nil {
				t.Fatal(err)
			}
			if prev, dup := granted[g.Instance]; dup {
				t.Errorf("%s granted to %s and %s", g.Instance, prev.master, m.name)
			}
			p := placed{Grant: g, master: m.name, port: listen(t)}
			granted[g.Instance] = p
			allocs[g.Alloc] = m.name
			m.send(pipes.TypeStarted, startedFor(g, p.port))
		case pipes.TypeApprove:
			var a pipes.AllocRef
			if err := msg.Decode(&a); err != nil {
				t.Fatal(err)
			}
			if allocs[a.Alloc] != m.name {
				t.Errorf("master %s approved for alloc %s it was not granted", m.name, a.Alloc)
			}
			approved[a.Alloc] = true
		default:
			t.Errorf("master %s: unexpected %s", m.name, msg.Type)
		}
	}
	deadline := time.After(20 * time.Second)
	for len(approved) < n {
		// A nil channel never delivers, so one loop serves one or two masters.
		var c0, c1 chan *pipes.Msg
		c0 = ms[0].msgs
		if len(ms) > 1 {
			c1 = ms[1].msgs
		}
		select {
		case msg, ok := <-c0:
			handle(ms[0], msg, ok)
		case msg, ok := <-c1:
			handle(ms[1], msg, ok)
		case <-deadline:
			t.Fatalf("only %d of %d instances approved; granted %v", len(approved), n, granted)
		}
	}
	return granted
}

// TestLinkScaleDownAndRemove checks that placed instances are stopped, not
// forgotten, when a need shrinks or goes, and dropped once the master
// confirms.
func TestLinkScaleDownAndRemove(t *testing.T) {
	srv, c := newTestServer(t, "")
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 2)
	gs := runAll(t, []*fakeMaster{m}, 2)

	st, err := c.Scale(t.Context(), "web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if in := instance(st, "web.1"); in == nil || in.State != needs.Stopping || !in.Removing {
		t.Errorf("web.1 after scale down = %+v, want stopping and removing", in)
	}
	if st.Running != 1 || st.Pending != 0 {
		t.Errorf("after scale down running %d pending %d, want 1/0", st.Running, st.Pending)
	}
	var stop pipes.Stop
	m.expect(pipes.TypeStop, &stop)
	if stop.Alloc != gs["web.1"].Alloc || !strings.Contains(stop.Reason, "scaled down") || stop.GraceMS != 5000 {
		t.Errorf("stop = %+v, want web.1's alloc %s, scaled down, default grace 5000", stop, gs["web.1"].Alloc)
	}
	m.send(pipes.TypeExited, &pipes.Exited{Alloc: stop.Alloc, Instance: "web.1", Code: -1, Signal: "SIGTERM", Requested: true})
	waitEvent(t, events, 5*time.Second, "instance.removed web.1", func(e lan.Event) bool {
		return e.Kind == lan.EventInstanceRemoved && e.Instance != nil && e.Instance.Name == "web.1"
	})
	if st := getNeed(t, c, "web"); len(st.InstanceList) != 1 || st.InstanceList[0].Name != "web.0" || st.InstanceList[0].State != needs.Running {
		t.Errorf("after the stop was confirmed: %v, want only web.0 running", st.InstanceList)
	}

	if err := c.RemoveNeed(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	m.expect(pipes.TypeStop, &stop)
	if stop.Alloc != gs["web.0"].Alloc || !strings.Contains(stop.Reason, "removed") {
		t.Errorf("stop = %+v, want web.0's alloc %s, need removed", stop, gs["web.0"].Alloc)
	}
	if _, err := c.Need(t.Context(), "web"); !errors.Is(err, needs.ErrNotFound) {
		t.Errorf("Need after rm = %v, want ErrNotFound", err)
	}
	if svcs := services(t, c); len(svcs) != 1 || svcs[0].State != needs.Stopping {
		t.Errorf("services after rm = %v, want web.0 stopping until its master confirms", svcs)
	}
	m.send(pipes.TypeExited, &pipes.Exited{Alloc: stop.Alloc, Instance: "web.0", Code: 0, Requested: true})
	waitFor(t, 5*time.Second, func() bool { return len(services(t, c)) == 0 })
}

// TestLinkMasterLost checks the TTL of a disconnected master: a reconnect
// within it keeps the instance, a longer absence re-queues it.
func TestLinkMasterLost(t *testing.T) {
	srv, c := startServer(t, lan.Config{MasterTTL: time.Second})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m}, 1)["web.0"]

	// Reconnect at once and announce the allocation: nothing changes.
	m.conn.Close()
	waitFor(t, 5*time.Second, func() bool {
		ms, err := c.Masters(t.Context())
		return err == nil && len(ms) == 1 && !ms[0].Connected
	})
	m = connectMasterWithAllocs(t, srv, id1, "m1", []pipes.Started{*startedFor(g.Grant, g.port)})
	m.expect(pipes.TypeWelcome, nil)
	m.expect(pipes.TypeApprove, nil) // approved again, not stopped
	m.send(pipes.TypePing, nil)
	m.expect(pipes.TypePong, nil) // no stop came first
	if svcs := services(t, c); len(svcs) != 1 || svcs[0].State != needs.Running || svcs[0].Alloc != g.Alloc {
		t.Fatalf("after reconnect: %v, want web.0 still running under %s", svcs, g.Alloc)
	}

	// Not heard from for longer than the TTL: pending again, then offered
	// to another master.
	m.conn.Close()
	lastSent := time.Unix(0, m.sent.Load()) // its last frame (a pong or the ping above)
	ev := waitEvent(t, events, 5*time.Second, "web.0 pending after m1 lost", func(e lan.Event) bool {
		return instanceEvent("web.0", needs.Pending)(e) && strings.Contains(e.Instance.Reason, "lost")
	})
	if d := ev.Time.Sub(lastSent); d < time.Second {
		t.Errorf("re-queued %v after m1's last frame, within the 1s TTL", d)
	}
	if in := ev.Instance; in.Alloc != "" || in.Master != "" || !strings.Contains(in.Reason, "master m1 lost") {
		t.Errorf("re-queued instance = %+v, want unplaced, reason naming m1 lost", in)
	}
	m2 := dialMaster(t, srv, "", id2, "m2")
	g2 := runAll(t, []*fakeMaster{m2}, 1)["web.0"]
	if g2.Alloc == g.Alloc {
		t.Errorf("re-placed under the old alloc %s", g.Alloc)
	}
	// The old master comes back still running the old allocation: it is
	// told to stop it.
	m = connectMasterWithAllocs(t, srv, id1, "m1", []pipes.Started{*startedFor(g.Grant, g.port)})
	m.expect(pipes.TypeWelcome, nil)
	var stop pipes.Stop
	m.expect(pipes.TypeStop, &stop)
	if stop.Alloc != g.Alloc {
		t.Errorf("stop for %s, want the old alloc %s", stop.Alloc, g.Alloc)
	}
	if svcs := services(t, c); len(svcs) != 1 || svcs[0].Master != "m2" || svcs[0].Alloc != g2.Alloc {
		t.Errorf("services = %v, want web.0 on m2", svcs)
	}
}

// connectMasterWithAllocs is connectMaster with allocations announced in the hello.
func connectMasterWithAllocs(t *testing.T, srv *lan.Server, id, name string, allocs []pipes.Started) *fakeMaster {
	t.Helper()
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatalf("dial /v1/link: %v", err)
	}
	m := newFakeMaster(t, conn, id, name)
	m.send(pipes.TypeHello, &pipes.Hello{ID: id, Name: name, Address: "127.0.0.1", Allocs: allocs})
	return m
}

// TestStartedThenExitedNoRace: an exit that arrives while the new child's
// ports are being checked must not race with the check.
func TestStartedThenExitedNoRace(t *testing.T) {
	srv, c := startServer(t, lan.Config{StartDeadline: 2 * time.Second, BidWindow: 5 * time.Second}) // the bid may come late under -race
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	m.takeOffer("web.0")
	var g pipes.Grant
	m.expect(pipes.TypeGrant, &g)
	m.send(pipes.TypeStarted, startedFor(g, deadPort(t)))
	waitEvent(t, events, 5*time.Second, "web.0 starting with a pid", func(e lan.Event) bool {
		return e.Kind == lan.EventInstance && e.Instance != nil && e.Instance.Name == "web.0" && e.Instance.PID != 0
	})
	m.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: g.Instance, Code: 1})
	ev := waitEvent(t, events, 5*time.Second, "web.0 backoff", instanceEvent("web.0", needs.Backoff))
	if ev.Instance.LastExit != "exit code 1" {
		t.Errorf("last_exit = %q, want exit code 1", ev.Instance.LastExit)
	}
}

// TestLinkNoPortsReady: a child without ports is approved when it says
// ready, whether in its started report or afterwards.
func TestLinkNoPortsReady(t *testing.T) {
	// MinUptime is far away, so only readiness can approve.
	srv, c := startServer(t, lan.Config{MinUptime: time.Hour})
	m := dialMaster(t, srv, "", id1, "m1")
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "worker", Command: []string{"/bin/work"}, Instances: intp(2)}); err != nil {
		t.Fatal(err)
	}
	grants := map[string]pipes.Grant{}
	for range 2 {
		var o pipes.Offer
		m.expect(pipes.TypeOffer, &o)
		m.send(pipes.TypeBid, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
	}
	for range 2 {
		var g pipes.Grant
		m.expect(pipes.TypeGrant, &g)
		grants[g.Instance] = g
	}
	g0, g1 := grants["worker.0"], grants["worker.1"]
	if g0.Alloc == "" || g1.Alloc == "" {
		t.Fatalf("grants = %v, want worker.0 and worker.1", grants)
	}
	started := func(g pipes.Grant, ready bool) *pipes.Started {
		return &pipes.Started{Alloc: g.Alloc, Instance: g.Instance, PID: os.Getpid(), Address: "127.0.0.1",
			StartedAt: time.Now(), Ready: ready}
	}

	m.send(pipes.TypeStarted, started(g0, true))
	var a pipes.AllocRef
	m.expect(pipes.TypeApprove, &a)
	if a.Alloc != g0.Alloc {
		t.Errorf("approved %s, want worker.0's %s", a.Alloc, g0.Alloc)
	}

	m.send(pipes.TypeStarted, started(g1, false))
	m.send(pipes.TypePing, nil)
	m.expect(pipes.TypePong, nil) // not approved without ready
	if in := instance(getNeed(t, c, "worker"), "worker.1"); in.State != needs.Starting {
		t.Errorf("worker.1 = %s before ready, want starting", in.State)
	}
	m.send(pipes.TypeReady, &pipes.AllocRef{Alloc: g1.Alloc})
	m.expect(pipes.TypeApprove, &a)
	if a.Alloc != g1.Alloc {
		t.Errorf("approved %s, want worker.1's %s", a.Alloc, g1.Alloc)
	}
	if st := getNeed(t, c, "worker"); st.Running != 2 {
		t.Errorf("running = %d, want 2", st.Running)
	}
}

// TestPlacementAvoidsFailedMaster: after a start fails on one master, the
// next attempt goes to another master that bids, even if the failed one
// would win on name.
func TestPlacementAvoidsFailedMaster(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: time.Second})
	m1, m2 := dialMaster(t, srv, "", id1, "m1"), dialMaster(t, srv, "", id2, "m2")
	addWeb(t, c, 1)
	m1.takeOffer("web.0")
	m2.takeOffer("web.0")
	var g pipes.Grant
	m1.expect(pipes.TypeGrant, &g) // equal load: m1 wins on name
	m1.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: g.Instance, Code: -1, Reason: "command not found"})

	// Both bid again after the back-off; m2 must get it this time.
	m1.takeOffer("web.0")
	m2.takeOffer("web.0")
	var g2 pipes.Grant
	m2.expect(pipes.TypeGrant, &g2)
	if g2.Alloc == g.Alloc {
		t.Fatal("second grant reused the failed allocation id")
	}
	st := getNeed(t, c, "web")
	if in := instance(st, "web.0"); in == nil || in.Master != "m2" || in.Restarts != 1 {
		t.Fatalf("web.0 = %+v, want starting on m2 after one failure", in)
	}
}

// TestLinkWhatAMasterDoesNotSpeak: the lanmanager's end of /v1/link follows
// pipes/doc.go's policy (issue 8 §3). A frame of an unknown type is
// answered "unsupported" with its id and the link stays; a frame of
// another envelope version is answered "unsupported" and the link closes.
func TestLinkWhatAMasterDoesNotSpeak(t *testing.T) {
	srv, _ := newTestServer(t, "")
	m := dialMaster(t, srv, "", "m-unsupported", "m1")
	if err := m.conn.Send(&pipes.Msg{V: pipes.Version, Type: "frobnicate", ID: 7, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	msg := m.expect(pipes.TypeError, nil)
	if msg.ID != 7 || msg.Error == nil || msg.Error.Code != pipes.CodeUnsupported {
		t.Fatalf("unknown type: answer id %d error %+v, want id 7 and code unsupported", msg.ID, msg.Error)
	}
	// The link stays: a ping is still answered.
	if err := m.conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: 8}); err != nil {
		t.Fatal(err)
	}
	if msg := m.expect(pipes.TypePong, nil); msg.ID != 8 {
		t.Fatalf("pong id %d, want 8", msg.ID)
	}
	if err := m.conn.Send(&pipes.Msg{V: pipes.Version + 1, Type: pipes.TypePing, ID: 9}); err != nil {
		t.Fatal(err)
	}
	msg = m.expect(pipes.TypeError, nil)
	if msg.ID != 9 || msg.Error == nil || msg.Error.Code != pipes.CodeUnsupported {
		t.Fatalf("another version: answer id %d error %+v, want id 9 and code unsupported", msg.ID, msg.Error)
	}
	m.closed(10 * time.Second)
}
