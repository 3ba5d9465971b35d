package lan_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// startedList is the hello allocs of a master that runs every grant of gs.
func startedList(gs ...placed) []pipes.Started {
	var out []pipes.Started
	for _, g := range gs {
		out = append(out, *startedFor(g.Grant, g.port))
	}
	return out
}

// expectStops reads n stops from m and returns their allocs, sorted.
func expectStops(m *fakeMaster, n int) []string {
	m.t.Helper()
	var allocs []string
	for range n {
		var st pipes.Stop
		m.expect(pipes.TypeStop, &st)
		allocs = append(allocs, st.Alloc)
	}
	slices.Sort(allocs)
	return allocs
}

// running returns the running instances of need by name.
func running(t *testing.T, c *lan.Client, need string) map[string]*needs.Instance {
	t.Helper()
	out := map[string]*needs.Instance{}
	for _, in := range getNeed(t, c, need).InstanceList {
		if in.State == needs.Running {
			out[in.Name] = in
		}
	}
	return out
}

// TestFencingPartitionPastTTL: a master cut off for longer than the TTL is
// lost and its instances run elsewhere; when it comes back still running
// the old allocations, they are stopped, its stale reports change nothing,
// and the need runs exactly as many instances as it asked for.
func TestFencingPartitionPastTTL(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now, BidWindow: time.Hour})
	events := subscribe(t, srv, c)
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 2)
	old := runAll(t, []*fakeMaster{m1}, 2)
	m2 := dialMaster(t, srv, "", id2, "m2")
	t0 := clock.Now()

	// The partition: m1's link stays up, nothing crosses it.
	m1.silent.Store(true)
	advanceTo(t, clock, t0.Add(ttl-time.Nanosecond), m2)
	if r := running(t, c, "web"); len(r) != 2 || r["web.0"].Master != "m1" || r["web.1"].Master != "m1" {
		t.Fatalf("one tick before the TTL: running %v, want both still on m1", r)
	}
	clock.Set(t0.Add(ttl))
	waitEvent(t, events, 10*time.Second, "master.lost m1", masterEvent(lan.EventMasterLost, "m1"))
	repl := runAll(t, []*fakeMaster{m2}, 2)
	for name, g := range repl {
		if g.Alloc == old[name].Alloc || g.master != "m2" {
			t.Errorf("%s re-placed as %+v, want a new alloc on m2", name, g)
		}
	}
	m1.closed(10 * time.Second)

	// The partition heals. m1 still runs web.0's old child and reports that
	// web.1's old child exited while it was cut off.
	back := connectMasterWithAllocs(t, srv, id1, "m1", startedList(old["web.0"]))
	back.send(pipes.TypePing, nil) // (after the hello, so answered after the reconciliation)
	back.expect(pipes.TypeWelcome, nil)
	if got := expectStops(back, 1); got[0] != old["web.0"].Alloc {
		t.Errorf("m1 told to stop %v, want the replaced %s", got, old["web.0"].Alloc)
	}
	back.expect(pipes.TypePong, nil) // nothing else: no approve, no grant
	// Every stale report about the old allocations is harmless.
	back.send(pipes.TypeExited, &pipes.Exited{Alloc: old["web.1"].Alloc, Instance: "web.1", Code: 1})
	back.send(pipes.TypeReady, &pipes.AllocRef{Alloc: old["web.0"].Alloc})
	back.send(pipes.TypeStarted, startedFor(old["web.1"].Grant, old["web.1"].port))
	var stale pipes.Stop
	back.expect(pipes.TypeStop, &stale)
	if stale.Alloc != old["web.1"].Alloc || stale.Reason != "stale allocation" {
		t.Errorf("answer to a stale started = %+v, want a stop of %s", stale, old["web.1"].Alloc)
	}
	back.send(pipes.TypeExited, &pipes.Exited{Alloc: old["web.0"].Alloc, Instance: "web.0", Code: -1, Signal: "SIGTERM", Requested: true})
	back.send(pipes.TypePing, nil)
	back.expect(pipes.TypePong, nil)

	st := getNeed(t, c, "web")
	if st.Running != st.Instances || st.Running != 2 || st.Pending != 0 {
		t.Errorf("settled: running %d pending %d of %d, want exactly 2 running", st.Running, st.Pending, st.Instances)
	}
	for _, in := range st.InstanceList {
		if in.Master != "m2" || in.Alloc != repl[in.Name].Alloc || in.Failures != 0 || in.Restarts != 0 {
			t.Errorf("%s = %+v, want running on m2 under %s, no failure counted", in.Name, in, repl[in.Name].Alloc)
		}
	}
}

// TestFencingHelloExitsAreFenced: exits a returning master carries in its
// hello count only for allocations that are still current.
func TestFencingHelloExitsAreFenced(t *testing.T) {
	srv, c := startServer(t, lan.Config{MasterTTL: time.Hour, BidWindow: time.Second})
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 2)
	gs := runAll(t, []*fakeMaster{m1}, 2)
	m1.conn.Close()
	waitMaster(t, c, "m1", func(m *needs.Master) bool { return !m.Connected })

	// web.0's child died while the link was down; web.1 still runs. A
	// made-up exit for an allocation nobody knows rides along.
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatal(err)
	}
	back := newFakeMaster(t, conn, id1, "m1")
	back.send(pipes.TypeHello, &pipes.Hello{ID: id1, Name: "m1", Address: "127.0.0.1",
		Allocs: startedList(gs["web.1"]),
		Exits: []pipes.Exited{{Alloc: gs["web.0"].Alloc, Instance: "web.0", Code: 2},
			{Alloc: "0000feedbeef0000", Instance: "web.1", Code: 9}}})
	back.expect(pipes.TypeWelcome, nil)
	var a pipes.AllocRef
	back.expect(pipes.TypeApprove, &a) // web.1 unchanged
	if a.Alloc != gs["web.1"].Alloc {
		t.Errorf("approved %s, want web.1's %s", a.Alloc, gs["web.1"].Alloc)
	}
	st := getNeed(t, c, "web")
	w0, w1 := instance(st, "web.0"), instance(st, "web.1")
	if w0.State != needs.Backoff || w0.LastExit != "exit code 2" || w0.Failures != 1 {
		t.Errorf("web.0 = %+v, want backoff after exit code 2", w0)
	}
	if w1.State != needs.Running || w1.Alloc != gs["web.1"].Alloc || w1.Failures != 0 || w1.LastExit != "" {
		t.Errorf("web.1 = %+v, want untouched by the unknown allocation's exit", w1)
	}
}

// TestFencingReturnWithinTTL: a master whose link drops and that comes
// back within the TTL keeps its instances: nothing is re-placed, nothing
// restarted.
func TestFencingReturnWithinTTL(t *testing.T) {
	const ttl = 5 * time.Second
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: ttl, Clock: clock.Now, BidWindow: time.Hour})
	events := subscribe(t, srv, c)
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 2)
	gs := runAll(t, []*fakeMaster{m1}, 2)
	m2 := dialMaster(t, srv, "", id2, "m2") // would take the instances if they were re-placed
	t0 := clock.Now()

	m1.silent.Store(true)
	m1.conn.Close()
	waitEvent(t, events, 10*time.Second, "master.disconnected m1", masterEvent(lan.EventMasterDown, "m1"))
	advanceTo(t, clock, t0.Add(ttl-time.Nanosecond), m2)

	back := connectMasterWithAllocs(t, srv, id1, "m1", startedList(gs["web.0"], gs["web.1"]))
	back.expect(pipes.TypeWelcome, nil)
	var approved []string
	for range 2 {
		var a pipes.AllocRef
		back.expect(pipes.TypeApprove, &a)
		approved = append(approved, a.Alloc)
	}
	slices.Sort(approved)
	want := []string{gs["web.0"].Alloc, gs["web.1"].Alloc}
	slices.Sort(want)
	if !slices.Equal(approved, want) {
		t.Errorf("approved %v again, want %v", approved, want)
	}
	// Well past the first TTL: still in place. m2's quiet queue (advanceTo
	// reads its next message) shows it was offered nothing.
	advanceTo(t, clock, t0.Add(ttl+2*time.Second), m2)
	back.send(pipes.TypePing, nil)
	back.expect(pipes.TypePong, nil)
	for _, in := range getNeed(t, c, "web").InstanceList {
		g := gs[in.Name]
		if in.State != needs.Running || in.Alloc != g.Alloc || in.Master != "m1" || in.Restarts != 0 || in.PID != os.Getpid() {
			t.Errorf("%s = %+v, want still running on m1 under %s", in.Name, in, g.Alloc)
		}
	}
	for {
		select {
		case e := <-events:
			if e.Kind == lan.EventMasterLost || e.Kind == lan.EventInstance && e.Instance.State != needs.Running {
				t.Errorf("event %s %+v: something was re-placed", e.Kind, e.Instance)
			}
			continue
		default:
		}
		break
	}
}

// TestFencingReportsFromAnotherMaster: a master cannot change an instance
// placed on another master, whatever it reports.
func TestFencingReportsFromAnotherMaster(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: time.Second})
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	g := runAll(t, []*fakeMaster{m1}, 1)["web.0"]
	m2 := dialMaster(t, srv, "", id2, "m2")

	m2.send(pipes.TypeStarted, startedFor(g.Grant, g.port))
	var st pipes.Stop
	m2.expect(pipes.TypeStop, &st)
	if st.Alloc != g.Alloc {
		t.Errorf("m2 told to stop %s, want %s", st.Alloc, g.Alloc)
	}
	m2.send(pipes.TypeReady, &pipes.AllocRef{Alloc: g.Alloc})
	m2.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: "web.0", Code: 1})
	m2.send(pipes.TypeBid, &pipes.Bid{Instance: "web.0", Round: 1, OK: true})
	m2.send(pipes.TypePing, nil)
	m2.expect(pipes.TypePong, nil)
	if !placedOn(t, c, g.Alloc, "m1") {
		t.Errorf("services %v, want web.0 untouched on m1", services(t, c))
	}
	if in := instance(getNeed(t, c, "web"), "web.0"); in.Failures != 0 || in.LastExit != "" {
		t.Errorf("web.0 = %+v, want no failure", in)
	}
}

// TestRestartConvergesWithoutRestarts: the lanmanager restarts; its master
// reconnects and re-announces what it runs. Healthy children are kept
// (approved again, never stopped), and a granted instance whose child
// never started is placed again.
func TestRestartConvergesWithoutRestarts(t *testing.T) {
	cfg := lan.Config{DataDir: t.TempDir(), BidWindow: time.Second}
	srv, c := startServer(t, cfg)
	m1 := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 2)
	gs := runAll(t, []*fakeMaster{m1}, 2)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "idle", Command: []string{"x"}, Instances: intp(1)}); err != nil {
		t.Fatal(err)
	}
	m1.takeOffer("idle.0")
	var gi pipes.Grant
	m1.expect(pipes.TypeGrant, &gi) // granted; the lanmanager goes down before the child starts
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv, c = startServer(t, cfg)
	events := subscribe(t, srv, c)
	back := connectMasterWithAllocs(t, srv, id1, "m1", startedList(gs["web.0"], gs["web.1"]))
	back.expect(pipes.TypeWelcome, nil)
	approved := map[string]bool{}
	for range 2 {
		var a pipes.AllocRef
		back.expect(pipes.TypeApprove, &a)
		approved[a.Alloc] = true
	}
	if !approved[gs["web.0"].Alloc] || !approved[gs["web.1"].Alloc] {
		t.Errorf("approved %v, want both web allocations", approved)
	}
	ev := waitEvent(t, events, 10*time.Second, "idle.0 pending", instanceEvent("idle.0", needs.Pending))
	if ev.Instance.Alloc != "" || ev.Instance.Failures != 0 {
		t.Errorf("idle.0 = %+v, want unplaced without a failure", ev.Instance)
	}
	o := back.takeOffer("idle.0")
	if o.Need.Name != "idle" {
		t.Errorf("offer %+v", o)
	}
	for _, in := range getNeed(t, c, "web").InstanceList {
		if in.State != needs.Running || in.Alloc != gs[in.Name].Alloc || in.Restarts != 0 {
			t.Errorf("%s after the restart = %+v, want still running under %s", in.Name, in, gs[in.Name].Alloc)
		}
	}
}
