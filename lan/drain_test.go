package lan_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// quiet checks that nothing but what a ping's pong waits behind is queued
// for m: the lanmanager sent it nothing.
func quiet(m *fakeMaster) {
	m.t.Helper()
	m.send(pipes.TypePing, nil)
	m.expect(pipes.TypePong, nil)
}

// allRunning fails unless every instance of need runs.
func allRunning(t *testing.T, c *lan.Client, need string, want int) *needs.NeedStatus {
	t.Helper()
	st := getNeed(t, c, need)
	if st.Running != want || len(st.InstanceList) != want {
		t.Fatalf("need %s: %d of %d running (%v), want %d", need, st.Running, len(st.InstanceList), st.InstanceList, want)
	}
	return st
}

// TestDrainHandsOffFirst: draining a master starts each of its instances on
// another master first, and stops the old allocation only once the
// replacement is approved; the need never runs fewer instances than it
// asked for. Stale reports of the old allocations change nothing; the
// drained master gets no offers until undrained; the drain survives a
// restart of the lanmanager.
func TestDrainHandsOffFirst(t *testing.T) {
	cfg := lan.Config{DataDir: t.TempDir(), BidWindow: 5 * time.Second}
	srv, c := startServer(t, cfg)
	events := subscribe(t, srv, c)
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 2)
	old := runAll(t, []*fakeMaster{a}, 2)
	b := dialMaster(t, srv, "", id2, "mb")

	e, err := c.Drain(t.Context(), "ma")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Draining || !e.Connected || e.Name != "ma" || e.Instances != 2 {
		t.Errorf("Drain answered %+v, want ma connected, draining, holding 2", e)
	}
	waitEvent(t, events, 10*time.Second, "master.drain ma", func(e lan.Event) bool {
		return masterEvent(lan.EventMasterDrain, "ma")(e) && e.Master.Draining
	})

	// mb is offered both instances, as replacements.
	b.takeOffer("web.0")
	b.takeOffer("web.1")
	grants := map[string]pipes.Grant{}
	for range 2 {
		var g pipes.Grant
		b.expect(pipes.TypeGrant, &g)
		if g.Alloc == old[g.Instance].Alloc {
			t.Fatalf("replacement of %s under the old alloc", g.Instance)
		}
		grants[g.Instance] = g
	}
	quiet(a) // ma was offered nothing and told to stop nothing yet
	st := allRunning(t, c, "web", 2)
	for _, in := range st.InstanceList {
		if in.Master != "ma" || in.Handoff == nil || in.Handoff.Master != "mb" || in.Handoff.Alloc != grants[in.Name].Alloc ||
			!strings.Contains(in.Reason, "replacement starting on master mb") {
			t.Errorf("%s while its replacement starts = %+v (handoff %+v)", in.Name, in, in.Handoff)
		}
	}
	if got := waitMaster(t, c, "mb", func(*needs.Master) bool { return true }); got.Instances != 2 {
		t.Errorf("mb holds %d, want its 2 replacements counted", got.Instances)
	}

	for _, name := range []string{"web.0", "web.1"} {
		g := grants[name]
		b.send(pipes.TypeStarted, startedFor(g, listen(t)))
		var ap pipes.AllocRef
		b.expect(pipes.TypeApprove, &ap)
		if ap.Alloc != g.Alloc {
			t.Fatalf("mb approved %s, want %s", ap.Alloc, g.Alloc)
		}
		var stop pipes.Stop
		a.expect(pipes.TypeStop, &stop)
		if stop.Alloc != old[name].Alloc || !strings.Contains(stop.Reason, "drains") {
			t.Fatalf("ma told to stop %+v, want %s's old alloc %s", stop, name, old[name].Alloc)
		}
		// By the time ma hears of it, the replacement runs.
		in := instance(allRunning(t, c, "web", 2), name)
		if in.Master != "mb" || in.Alloc != g.Alloc || in.Handoff != nil || in.Reason != "" || in.Restarts != 0 {
			t.Errorf("%s when ma is told to stop it = %+v, want running on mb under %s", name, in, g.Alloc)
		}
	}
	// Until ma confirms, it still holds the two stopping children.
	if got := waitMaster(t, c, "ma", func(*needs.Master) bool { return true }); got.Instances != 2 || !got.Draining {
		t.Errorf("ma before confirming = %+v, want draining, holding 2", got)
	}
	for _, name := range []string{"web.0", "web.1"} {
		a.send(pipes.TypeExited, &pipes.Exited{Alloc: old[name].Alloc, Instance: name, Code: -1, Signal: "SIGTERM", Requested: true})
	}
	waitMaster(t, c, "ma", func(m *needs.Master) bool { return m.Instances == 0 })

	// Stale reports of the old allocations are harmless.
	a.send(pipes.TypeExited, &pipes.Exited{Alloc: old["web.0"].Alloc, Instance: "web.0", Code: 1})
	a.send(pipes.TypeReady, &pipes.AllocRef{Alloc: old["web.1"].Alloc})
	a.send(pipes.TypeStarted, startedFor(old["web.1"].Grant, old["web.1"].port))
	var stale pipes.Stop
	a.expect(pipes.TypeStop, &stale)
	if stale.Alloc != old["web.1"].Alloc {
		t.Errorf("stale started answered with %+v", stale)
	}
	quiet(a)
	for _, in := range allRunning(t, c, "web", 2).InstanceList {
		if in.Master != "mb" || in.Alloc != grants[in.Name].Alloc || in.Failures != 0 {
			t.Errorf("%s after stale reports = %+v", in.Name, in)
		}
	}
	// Not a moment with fewer than two running: every instance event since
	// the drain said running.
	for {
		select {
		case e := <-events:
			if e.Kind == lan.EventInstance && e.Need == "web" && e.Instance.State != needs.Running {
				t.Errorf("instance event %s %s during the drain", e.Instance.Name, e.Instance.State)
			}
			continue
		default:
		}
		break
	}

	// A draining master takes no new work.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "api", Command: []string{"x"}, Instances: intp(1)}); err != nil {
		t.Fatal(err)
	}
	b.takeOffer("api.0")
	b.expect(pipes.TypeGrant, nil)
	quiet(a)
	// Undrained, it does.
	e, err = c.Undrain(t.Context(), "ma")
	if err != nil || e.Draining || !e.Connected {
		t.Fatalf("Undrain = %+v, %v; want ma connected, not draining", e, err)
	}
	waitEvent(t, events, 10*time.Second, "master.undrain ma", masterEvent(lan.EventMasterUndrain, "ma"))
	if _, err := c.Scale(t.Context(), "api", 2); err != nil {
		t.Fatal(err)
	}
	a.takeOffer("api.1")

	// The drain is persisted: drain again, restart, and ma is still draining.
	if _, err := c.Drain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, c = startServer(t, cfg)
	got := waitMaster(t, c, "ma", func(*needs.Master) bool { return true })
	if !got.Draining || got.Connected {
		t.Errorf("ma after a restart = %+v, want draining, not connected", got)
	}
	a2 := dialMaster(t, srv, "", id1, "ma")
	if _, err := c.Scale(t.Context(), "api", 3); err != nil {
		t.Fatal(err)
	}
	// api.2 (and api.0, api.1, whose masters have not come back) find no
	// master that takes new work.
	waitFor(t, 10*time.Second, func() bool {
		in := instance(getNeed(t, c, "api"), "api.2")
		return in != nil && strings.Contains(in.Reason, "draining ma")
	})
	quiet(a2)
}

// TestDrainNowhereToGo: with no other master, a draining master's instance
// keeps running and says why; when another master appears, it moves. A
// need pinned to the draining master stays.
func TestDrainNowhereToGo(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 1)
	old := runAll(t, []*fakeMaster{a}, 1)["web.0"]
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "pin", Command: []string{"x"}, Instances: intp(1), Machine: "ma"}); err != nil {
		t.Fatal(err)
	}
	a.takeOffer("pin.0")
	var gp pipes.Grant
	a.expect(pipes.TypeGrant, &gp)
	a.send(pipes.TypeStarted, &pipes.Started{Alloc: gp.Alloc, Instance: "pin.0", PID: 1, Address: "127.0.0.1", StartedAt: time.Now(), Ready: true})
	a.expect(pipes.TypeApprove, nil)

	if _, err := c.Drain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		st := getNeed(t, c, "web")
		return st.Running == 1 && len(st.Reasons) == 1 && strings.Contains(st.Reasons[0], "no other master can take it")
	})
	waitFor(t, 10*time.Second, func() bool {
		st := getNeed(t, c, "pin")
		return st.Running == 1 && len(st.Reasons) == 1 && strings.Contains(st.Reasons[0], "pinned")
	})
	quiet(a)

	b := dialMaster(t, srv, "", id2, "mb")
	g := runAll(t, []*fakeMaster{b}, 1)["web.0"]
	var stop pipes.Stop
	a.expect(pipes.TypeStop, &stop)
	if stop.Alloc != old.Alloc {
		t.Errorf("ma told to stop %s, want %s", stop.Alloc, old.Alloc)
	}
	if in := instance(allRunning(t, c, "web", 1), "web.0"); in.Master != "mb" || in.Alloc != g.Alloc {
		t.Errorf("web.0 = %+v, want on mb", in)
	}
	if in := instance(allRunning(t, c, "pin", 1), "pin.0"); in.Master != "ma" || in.Alloc != gp.Alloc {
		t.Errorf("pin.0 = %+v, want still on ma", in)
	}
}

// TestDrainReplacementFails: a replacement that dies before its approval
// is dropped; the instance keeps running where it was and the handoff is
// tried again.
func TestDrainReplacementFails(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 1)
	old := runAll(t, []*fakeMaster{a}, 1)["web.0"]
	b := dialMaster(t, srv, "", id2, "mb")
	if _, err := c.Drain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	b.takeOffer("web.0")
	var g pipes.Grant
	b.expect(pipes.TypeGrant, &g)
	b.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: "web.0", Code: -1, Reason: "command not found"})
	waitFor(t, 10*time.Second, func() bool {
		in := instance(getNeed(t, c, "web"), "web.0")
		return in.Handoff == nil && strings.Contains(in.Reason, "replacement on master mb exited: command not found")
	})
	in := instance(allRunning(t, c, "web", 1), "web.0")
	if in.Alloc != old.Alloc || in.Master != "ma" || in.Failures != 0 {
		t.Errorf("web.0 = %+v, want still running on ma, no failure", in)
	}
	quiet(a)
	b.takeOffer("web.0") // tried again
	var g2 pipes.Grant
	b.expect(pipes.TypeGrant, &g2)
	if g2.Alloc == g.Alloc {
		t.Error("second replacement reused the failed alloc")
	}
}

// TestDrainOldMasterLost: the draining master is lost while the
// replacement starts: the instance moves to the replacement at once,
// without a round of pending.
func TestDrainOldMasterLost(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second, MasterTTL: time.Second})
	events := subscribe(t, srv, c)
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 1)
	runAll(t, []*fakeMaster{a}, 1)
	b := dialMaster(t, srv, "", id2, "mb")
	if _, err := c.Drain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	b.takeOffer("web.0")
	var g pipes.Grant
	b.expect(pipes.TypeGrant, &g)
	a.conn.Close()
	waitEvent(t, events, 10*time.Second, "master.lost ma", masterEvent(lan.EventMasterLost, "ma"))
	in := instance(getNeed(t, c, "web"), "web.0")
	if in.State != needs.Starting || in.Alloc != g.Alloc || in.Master != "mb" || in.Handoff != nil ||
		!strings.Contains(in.Reason, "moved to its replacement on master mb") {
		t.Fatalf("web.0 after ma was lost = %+v, want starting on mb under %s", in, g.Alloc)
	}
	b.send(pipes.TypeStarted, startedFor(g, listen(t)))
	var ap pipes.AllocRef
	b.expect(pipes.TypeApprove, &ap)
	if ap.Alloc != g.Alloc {
		t.Errorf("approved %s, want %s", ap.Alloc, g.Alloc)
	}
	for {
		select {
		case e := <-events:
			if e.Kind == lan.EventInstance && e.Need == "web" && (e.Instance.State == needs.Pending || e.Instance.State == needs.Backoff) {
				t.Errorf("web.0 went %s", e.Instance.State)
			}
			continue
		default:
		}
		break
	}
}

// TestDrainUndrainCancelsReplacement: undraining while a replacement starts
// stops the replacement; the instance stays where it runs.
func TestDrainUndrainCancelsReplacement(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 1)
	old := runAll(t, []*fakeMaster{a}, 1)["web.0"]
	b := dialMaster(t, srv, "", id2, "mb")
	if _, err := c.Drain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	b.takeOffer("web.0")
	var g pipes.Grant
	b.expect(pipes.TypeGrant, &g)
	if _, err := c.Undrain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	var stop pipes.Stop
	b.expect(pipes.TypeStop, &stop)
	if stop.Alloc != g.Alloc {
		t.Errorf("mb told to stop %s, want the replacement %s", stop.Alloc, g.Alloc)
	}
	// Its late started report is stale.
	b.send(pipes.TypeStarted, startedFor(g, listen(t)))
	b.expect(pipes.TypeStop, &stop)
	quiet(a)
	in := instance(allRunning(t, c, "web", 1), "web.0")
	if in.Alloc != old.Alloc || in.Master != "ma" || in.Handoff != nil || in.Reason != "" {
		t.Errorf("web.0 = %+v, want on ma as before", in)
	}
}

func TestDrainAPI(t *testing.T) {
	srv, c := startServer(t, lan.Config{})
	dialMaster(t, srv, "", id1, "ma")
	for _, tt := range []struct {
		method, path string
		want         int
		wantIn       string
	}{
		{http.MethodPost, "/v1/masters/nope/drain", http.StatusNotFound, "nope"},
		{http.MethodPost, "/v1/masters/nope/undrain", http.StatusNotFound, "never seen"},
		{http.MethodPost, "/v1/masters/Bad_Name/drain", http.StatusBadRequest, "master"},
		{http.MethodGet, "/v1/masters/ma/drain", http.StatusMethodNotAllowed, "POST"},
		{http.MethodDelete, "/v1/masters/ma/undrain", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/v1/masters/ma/evict", http.StatusNotFound, "evict"},
		{http.MethodPost, "/v1/masters/ma", http.StatusNotFound, "/v1/masters/ma"},
	} {
		code, body := call(t, srv, tt.method, tt.path, "", "")
		if code != tt.want || !strings.Contains(errorMessage(t, body), tt.wantIn) {
			t.Errorf("%s %s = %d %s, want %d mentioning %q", tt.method, tt.path, code, body, tt.want, tt.wantIn)
		}
	}
	if _, err := c.Drain(t.Context(), "nope"); !errors.Is(err, needs.ErrNotFound) {
		t.Errorf("client Drain(nope) = %v, want ErrNotFound", err)
	}
	// Idempotent both ways.
	for range 2 {
		if e, err := c.Drain(t.Context(), "ma"); err != nil || !e.Draining {
			t.Fatalf("Drain = %+v, %v", e, err)
		}
	}
	ms, err := c.Masters(t.Context())
	if err != nil || len(ms) != 1 || !ms[0].Draining || !ms[0].Connected || ms[0].LastSeen.IsZero() {
		t.Fatalf("Masters = %+v, %v; want ma draining, connected, last seen", ms, err)
	}
	// The drain's answer is the same entry, free ports computed alike.
	if e, err := c.Drain(t.Context(), "ma"); err != nil || !reflect.DeepEqual(e.Free, ms[0].Free) || e.Instances != ms[0].Instances {
		t.Errorf("Drain answered %+v, %v; Masters says %+v", e, err, ms[0])
	}
	for range 2 {
		if e, err := c.Undrain(t.Context(), "ma"); err != nil || e.Draining {
			t.Fatalf("Undrain = %+v, %v", e, err)
		}
	}
}

// TestDrainRetiringAcrossReconnect: a drained master that reconnects before
// confirming the stop of a replaced allocation is told to stop it again,
// and keeps counting it until it confirms.
func TestDrainRetiringAcrossReconnect(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 1)
	old := runAll(t, []*fakeMaster{a}, 1)["web.0"]
	b := dialMaster(t, srv, "", id2, "mb")
	if _, err := c.Drain(t.Context(), "ma"); err != nil {
		t.Fatal(err)
	}
	runAll(t, []*fakeMaster{b}, 1)
	a.expect(pipes.TypeStop, nil)
	a.conn.Close()
	waitMaster(t, c, "ma", func(m *needs.Master) bool { return !m.Connected && m.Instances == 1 })

	back := connectMasterWithAllocs(t, srv, id1, "ma", startedList(old))
	back.expect(pipes.TypeWelcome, nil)
	var stop pipes.Stop
	back.expect(pipes.TypeStop, &stop)
	if stop.Alloc != old.Alloc {
		t.Errorf("ma told to stop %s, want the replaced %s", stop.Alloc, old.Alloc)
	}
	if e := waitMaster(t, c, "ma", func(m *needs.Master) bool { return m.Connected }); e.Instances != 1 || !e.Draining {
		t.Errorf("ma back = %+v, want draining, still holding the stopping child", e)
	}
	back.send(pipes.TypeExited, &pipes.Exited{Alloc: old.Alloc, Instance: "web.0", Code: -1, Signal: "SIGTERM", Requested: true})
	waitMaster(t, c, "ma", func(m *needs.Master) bool { return m.Connected && m.Instances == 0 })
	allRunning(t, c, "web", 1)
}
