package lan_test

import (
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

const id3 = "00112233445566ff"

// dialLoadsMaster connects a fake master that asks for the running set
// and for the other masters' loads.
func dialLoadsMaster(t *testing.T, srv *lan.Server, id, name string, httpRange [2]int) *fakeMaster {
	t.Helper()
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatal(err)
	}
	m := newFakeMaster(t, conn, id, name)
	m.send(pipes.TypeHello, &pipes.Hello{ID: id, Name: name, Address: "127.0.0.1", Version: "test", Services: true, Loads: true,
		Ranges: map[needs.Protocol][2]int{needs.HTTP: httpRange}})
	var w pipes.Welcome
	m.expect(pipes.TypeWelcome, &w)
	if !w.Loads {
		t.Fatalf("welcome %+v does not say the lanmanager passes loads on", w)
	}
	return m
}

// startLoads starts a lanmanager with need web (ingress, balanced by
// resource), runs web.0 on fake master m1 (driven by the recorder
// returned) and links m2 after it; both take loads. It returns web.0's
// allocation.
func startLoads(t *testing.T) (*lan.Server, *lan.Client, *recorder, string, *fakeMaster) {
	t.Helper()
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	zero := 0
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"x"}, Instances: &zero, Protocols: []needs.Protocol{needs.HTTP},
		Ingress: []needs.Ingress{{Protocol: needs.HTTP, Port: 8080}}, Balance: "resource"}); err != nil {
		t.Fatal(err)
	}
	m1 := dialLoadsMaster(t, srv, id1, "m1", [2]int{40000, 40009})
	r := &recorder{t: t, m: m1, c: c}
	r.place("web", needs.HTTP)
	alloc := ""
	for _, in := range services(t, c) {
		if in.Name == "web.0" {
			alloc = in.Alloc
		}
	}
	if alloc == "" {
		t.Fatal("web.0 is not in /v1/services")
	}
	m2 := dialLoadsMaster(t, srv, id2, "m2", [2]int{41000, 41009})
	return srv, c, r, alloc, m2
}

// TestLoadsRelayed: the figures a master sends for its own running
// instance reach the other masters, with their age; figures for an
// instance that runs elsewhere, or under another allocation, are dropped,
// so a master cannot speak for another's children; a bad entry is refused
// with its field named; a master that links later gets the whole book.
func TestLoadsRelayed(t *testing.T) {
	srv, c, r, alloc, m2 := startLoads(t)
	m1 := r.m

	m1.send(pipes.TypeLoads, &pipes.Loads{Loads: []pipes.Load{
		{Instance: "web.0", Alloc: alloc, CPUPercent: 90, HeapUsed: 5, HeapTotal: 10, AgeMS: 500},
		{Instance: "web.1", Alloc: "abcdefgh12", CPUPercent: 1}, // no such instance
		{Instance: "web.0", Alloc: "abcdefgh12", CPUPercent: 1}, // not its allocation
	}})
	var got pipes.Loads
	m2.nextOf(pipes.TypeLoads, &got)
	if len(got.Loads) != 1 {
		t.Fatalf("m2 got loads %+v, want web.0's only", got.Loads)
	}
	l := got.Loads[0]
	if l.Instance != "web.0" || l.Alloc != alloc || l.CPUPercent != 90 || l.HeapUsed != 5 || l.HeapTotal != 10 {
		t.Errorf("m2 got %+v, want web.0 at 90%% CPU, heap 5/10", l)
	}
	if l.AgeMS < 500 || l.AgeMS > 500+10_000 {
		t.Errorf("age %d ms, want at least the 500 ms it was sent with, and not much more", l.AgeMS)
	}

	// m2 claims m1's instance: dropped. A bad entry is refused, naming it,
	// and the link stays; m2's frames are dispatched in order, so once
	// the error comes, the claim has been handled.
	m2.send(pipes.TypeLoads, &pipes.Loads{Loads: []pipes.Load{{Instance: "web.0", Alloc: alloc, CPUPercent: 0}}})
	m2.send(pipes.TypeLoads, map[string]any{"loads": []map[string]any{{"instance": "web.0", "alloc": alloc, "cpu_percent": -5}}})
	var e *pipes.Msg
	for e == nil || e.Type != pipes.TypeError {
		e = m2.next(10 * time.Second)
	}
	if e.Error == nil || !strings.Contains(e.Error.Message, "loads[0].cpu_percent") {
		t.Errorf("bad loads answered %+v, want an error naming loads[0].cpu_percent", e.Error)
	}
	// An older sample of web.0 than the one kept, from its own master: ignored.
	m1.send(pipes.TypeLoads, &pipes.Loads{Loads: []pipes.Load{{Instance: "web.0", Alloc: alloc, CPUPercent: 3, AgeMS: 30_000}}})

	// Relays carry only what changed: web.1 starts on m1 and reports;
	// m2's next loads frame names web.1 alone.
	if _, err := c.Scale(t.Context(), "web", 2); err != nil {
		t.Fatal(err)
	}
	var o pipes.Offer
	r.next(pipes.TypeOffer, &o)
	m1.send(pipes.TypeBid, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
	var g pipes.Grant
	r.next(pipes.TypeGrant, &g)
	m1.send(pipes.TypeStarted, startedFor(g, listen(t)))
	r.next(pipes.TypeApprove, nil)
	m1.send(pipes.TypeLoads, &pipes.Loads{Loads: []pipes.Load{{Instance: g.Instance, Alloc: g.Alloc, CPUPercent: 40}}})
	for {
		m2.nextOf(pipes.TypeLoads, &got)
		if len(got.Loads) != 1 || got.Loads[0].Instance != "web.0" || got.Loads[0].CPUPercent != 90 {
			break // not a relay of the ignored older sample
		}
	}
	if len(got.Loads) != 1 || got.Loads[0].Instance != g.Instance || got.Loads[0].CPUPercent != 40 {
		t.Errorf("m2's next loads %+v, want %s alone at 40%%", got.Loads, g.Instance)
	}

	// A master that links later gets the whole book: web.0 still at 90 %
	// (m2's claim and the older sample were dropped), web.1 at 40 %.
	m3 := dialLoadsMaster(t, srv, id3, "m3", [2]int{42000, 42009})
	m3.nextOf(pipes.TypeLoads, &got)
	cpu := map[string]float64{}
	for _, l := range got.Loads {
		cpu[l.Instance] = l.CPUPercent
	}
	if len(got.Loads) != 2 || cpu["web.0"] != 90 || cpu[g.Instance] != 40 {
		t.Errorf("m3's first loads %+v, want web.0 at 90%% and %s at 40%%", got.Loads, g.Instance)
	}
	// And the links are still up: a scale brings offers to all three.
	if _, err := c.Scale(t.Context(), "web", 3); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*fakeMaster{m1, m2, m3} {
		m.nextOf(pipes.TypeOffer, nil)
	}
}

// TestLoadsFlood: a master that sends loads frames back to back, far more
// than a second's budget, has the rest of the second's frames dropped
// before they are decoded; what it sent within the budget is kept, and
// the other masters' links go on (a scale still reaches them).
func TestLoadsFlood(t *testing.T) {
	srv, c, r, alloc, m2 := startLoads(t)
	m1 := r.m
	full := make([]pipes.Load, pipes.MaxLoads)
	for i := range full {
		full[i] = pipes.Load{Instance: "web.0", Alloc: alloc, CPUPercent: 50}
	}
	const frames = 40 // ten times the budget of a second
	start := time.Now()
	for range frames {
		m1.send(pipes.TypeLoads, &pipes.Loads{Loads: full})
	}
	sent := time.Since(start)
	// Every frame has been dispatched once a ping sent after them is
	// answered (frames are dispatched in order).
	m1.send(pipes.TypePing, nil)
	m1.nextOf(pipes.TypePong, nil)
	if srv.LoadsDropped() == 0 {
		t.Fatalf("%d frames of %d entries in %v: none dropped", frames, pipes.MaxLoads, sent)
	}
	var got pipes.Loads
	m2.nextOf(pipes.TypeLoads, &got)
	if len(got.Loads) != 1 || got.Loads[0].CPUPercent != 50 {
		t.Errorf("m2 got %+v, want web.0 at 50%% (what m1 sent within its budget)", got.Loads)
	}
	// At most the budget of each second the flood spanned was taken.
	seconds := int64(sent/time.Second) + 2
	if kept := int64(frames) - srv.LoadsDropped(); kept > seconds*4 {
		t.Errorf("%d of %d frames kept in %v, want at most 4 a second", kept, frames, sent)
	}
	// m2's link is healthy: a scale reaches it as an offer.
	if _, err := c.Scale(t.Context(), "web", 2); err != nil {
		t.Fatal(err)
	}
	m2.nextOf(pipes.TypeOffer, nil)
}
