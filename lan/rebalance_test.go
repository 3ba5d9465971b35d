package lan_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// playMaster plays m's side of the link in a goroutine until the test
// ends: it bids yes on every offer, answers every grant with a child that
// listens on a real loopback port, and confirms every stop with an exit.
// live counts the allocations it runs (granted, not yet stopped), as a
// master's process table would.
type playMaster struct {
	*fakeMaster
	mu   sync.Mutex      // Protects following.
	live map[string]bool // allocs running
	errs []string
}

func play(t *testing.T, m *fakeMaster) *playMaster {
	t.Helper()
	pm := &playMaster{fakeMaster: m, live: map[string]bool{}}
	port := listen(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		pm.mu.Lock()
		defer pm.mu.Unlock()
		for _, e := range pm.errs {
			t.Errorf("master %s: %s", m.name, e)
		}
	})
	wg.Go(func() {
		for {
			var msg *pipes.Msg
			var ok bool
			select {
			case msg, ok = <-m.msgs:
			case <-stop:
				return
			}
			if !ok {
				return
			}
			var err error
			switch msg.Type {
			case pipes.TypeOffer:
				var o pipes.Offer
				if err = msg.Decode(&o); err == nil {
					err = m.conn.SendBody(pipes.TypeBid, 0, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
				}
			case pipes.TypeGrant:
				var g pipes.Grant
				if err = msg.Decode(&g); err == nil {
					pm.mu.Lock()
					pm.live[g.Alloc] = true
					pm.mu.Unlock()
					err = m.conn.SendBody(pipes.TypeStarted, 0, startedFor(g, port))
				}
			case pipes.TypeStop:
				var s pipes.Stop
				if err = msg.Decode(&s); err == nil {
					pm.mu.Lock()
					delete(pm.live, s.Alloc)
					pm.mu.Unlock()
					err = m.conn.SendBody(pipes.TypeExited, 0, &pipes.Exited{Alloc: s.Alloc, Code: -1, Signal: "SIGTERM", Requested: true})
				}
			case pipes.TypeApprove:
			default:
				err = errors.New("unexpected " + msg.Type)
			}
			if err != nil {
				pm.mu.Lock()
				pm.errs = append(pm.errs, err.Error())
				pm.mu.Unlock()
			}
		}
	})
	return pm
}

func (pm *playMaster) running() int {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return len(pm.live)
}

// spreadOf counts the need's running instances per master, and says
// whether any has a replacement under way.
func spreadOf(t *testing.T, c *lan.Client, need string) (running int, per map[string]int, handoffs int) {
	t.Helper()
	per = map[string]int{}
	for _, in := range services(t, c) {
		if in.Need != need {
			continue
		}
		if in.State == needs.Running {
			running++
			per[in.Master]++
		}
		if in.Handoff != nil {
			handoffs++
		}
	}
	return running, per, handoffs
}

// watchEven polls, until the need runs evenly as want says with no
// replacement under way, that it never runs fewer than desired instances:
// by the lanmanager's account and by the masters' own. It returns the
// lowest counts seen.
func watchEven(t *testing.T, c *lan.Client, need string, desired int, want map[string]int, ms ...*playMaster) (minAPI, minReal int) {
	t.Helper()
	minAPI, minReal = desired, desired
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		running, per, handoffs := spreadOf(t, c, need)
		real := 0
		for _, m := range ms {
			real += m.running()
		}
		minAPI, minReal = min(minAPI, running), min(minReal, real)
		if handoffs == 0 && reflect.DeepEqual(per, want) && real == desired {
			return minAPI, minReal
		}
		if time.Now().After(deadline) {
			t.Fatalf("need %s not spread as %v within 30s: running %d as %v, %d replacement(s) under way, masters run %d",
				need, want, running, per, handoffs, real)
		}
		<-tick.C
	}
}

// TestRebalanceStartBeforeStop: six instances placed while only m1 was
// connected move to m2 until each runs three, one at a time, each started
// and approved on m2 before its old child stops; the need never runs fewer
// than six, by the lanmanager's account or by the masters'.
func TestRebalanceStartBeforeStop(t *testing.T) {
	const want = 6
	srv, c := startServer(t, lan.Config{})
	m1 := play(t, dialMaster(t, srv, "", id1, "m1"))
	addWeb(t, c, want)
	watchEven(t, c, "web", want, map[string]int{"m1": want}, m1)
	m2 := play(t, dialMaster(t, srv, "", id2, "m2"))
	waitMaster(t, c, "m2", func(m *needs.Master) bool { return m.Connected })
	events := subscribe(t, srv, c) // from here on, every instance event must say running

	rb, err := c.Rebalance(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	wantPlan := &lan.Rebalance{Need: "web", Spread: map[string]int{"m1": 6, "m2": 0},
		Moves: []lan.Move{{From: "m1", To: "m2"}, {From: "m1", To: "m2"}, {From: "m1", To: "m2"}}}
	if !reflect.DeepEqual(rb, wantPlan) {
		t.Errorf("Rebalance(web) = %+v, want %+v", rb, wantPlan)
	}
	minAPI, minReal := watchEven(t, c, "web", want, map[string]int{"m1": 3, "m2": 3}, m1, m2)
	if minAPI < want || minReal < want {
		t.Errorf("while rebalancing web ran as few as %d by the lanmanager and %d on the masters; want never below %d", minAPI, minReal, want)
	}
	started, moved := 0, 0
	waitEvent(t, events, 10*time.Second, "need.rebalanced web", func(e lan.Event) bool {
		switch {
		case e.Kind == lan.EventInstance && e.Need == "web" && e.Instance.State != needs.Running:
			t.Errorf("instance event %s %s while rebalancing", e.Instance.Name, e.Instance.State)
		case e.Kind == lan.EventMoveStarted:
			started++
		case e.Kind == lan.EventMoveEnded && strings.Contains(e.Message, "moved from master m1 to master m2"):
			moved++
		case e.Kind == lan.EventMoveEnded:
			t.Errorf("move ended without moving: %s", e.Message)
		}
		return e.Kind == lan.EventNeedRebalanced && e.Need == "web"
	})
	if started != 3 || moved != 3 {
		t.Errorf("%d move(s) started and %d moved, want 3 and 3", started, moved)
	}
	for _, in := range allRunning(t, c, "web", want).InstanceList {
		if in.Reason != "" || in.Restarts != 0 || in.Failures != 0 {
			t.Errorf("%s after the rebalance = %+v, want running, no reason, no restart", in.Name, in)
		}
	}
	// Even now: asking again moves nothing.
	rb, err = c.Rebalance(t.Context(), "web")
	if err != nil || len(rb.Moves) != 0 || rb.Moving != "" || !strings.Contains(rb.Note, "even") {
		t.Errorf("Rebalance(web) once even = %+v, %v; want no move, a note that it is even", rb, err)
	}
}

// TestRebalanceEvents: every move is announced when it starts and when it
// ends, and no instance of the need leaves running meanwhile.
func TestRebalanceEvents(t *testing.T) {
	srv, c := startServer(t, lan.Config{})
	m1 := play(t, dialMaster(t, srv, "", id1, "m1"))
	addWeb(t, c, 4)
	watchEven(t, c, "web", 4, map[string]int{"m1": 4}, m1)
	m2 := play(t, dialMaster(t, srv, "", id2, "m2"))
	waitMaster(t, c, "m2", func(m *needs.Master) bool { return m.Connected })
	events := subscribe(t, srv, c)
	if _, err := c.Rebalance(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	var seen []lan.Event
	waitEvent(t, events, 30*time.Second, "need.rebalanced web", func(e lan.Event) bool {
		seen = append(seen, e)
		return e.Kind == lan.EventNeedRebalanced && e.Need == "web"
	})
	watchEven(t, c, "web", 4, map[string]int{"m1": 2, "m2": 2}, m1, m2)
	var kinds []string
	for _, e := range seen {
		switch e.Kind {
		case lan.EventInstance:
			if e.Instance.State != needs.Running {
				t.Errorf("instance event %s %s while rebalancing", e.Instance.Name, e.Instance.State)
			}
		case lan.EventNeedRebalance, lan.EventMoveStarted, lan.EventMoveEnded, lan.EventNeedRebalanced:
			kinds = append(kinds, e.Kind)
			if e.Need != "web" || e.Message == "" {
				t.Errorf("%s event without need or message: %+v", e.Kind, e)
			}
			if e.Kind == lan.EventMoveEnded && !strings.Contains(e.Message, "moved from master m1 to master m2") {
				t.Errorf("move ended: %s; want it moved from m1 to m2", e.Message)
			}
		}
	}
	wantKinds := []string{lan.EventNeedRebalance, lan.EventMoveStarted, lan.EventMoveEnded, lan.EventMoveStarted, lan.EventMoveEnded,
		lan.EventNeedRebalanced}
	if !reflect.DeepEqual(kinds, wantKinds) {
		t.Errorf("rebalance events %v, want %v (one move at a time)", kinds, wantKinds)
	}
}

// TestRebalanceAuto: with AutoRebalance, a need whose spread stays uneven
// for RebalanceAfter is rebalanced by itself, never below its count.
func TestRebalanceAuto(t *testing.T) {
	srv, c := startServer(t, lan.Config{AutoRebalance: true, RebalanceAfter: 200 * time.Millisecond})
	m1 := play(t, dialMaster(t, srv, "", id1, "m1"))
	addWeb(t, c, 5)
	watchEven(t, c, "web", 5, map[string]int{"m1": 5}, m1)
	m2 := play(t, dialMaster(t, srv, "", id2, "m2"))
	minAPI, minReal := watchEven(t, c, "web", 5, map[string]int{"m1": 3, "m2": 2}, m1, m2)
	if minAPI < 5 || minReal < 5 {
		t.Errorf("while rebalancing by itself web ran as few as %d by the lanmanager and %d on the masters; want never below 5", minAPI, minReal)
	}
}

// TestRebalanceNothingToMove: a need already even, one pinned to a
// master, and a master alone move nothing, and say why.
func TestRebalanceNothingToMove(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 1)
	runAll(t, []*fakeMaster{a}, 1)
	rb, err := c.Rebalance(t.Context(), "web")
	if err != nil || len(rb.Moves) != 0 || !strings.Contains(rb.Note, "1 master(s)") || rb.Spread["ma"] != 1 {
		t.Errorf("Rebalance with one master = %+v, %v; want nothing to move, a note", rb, err)
	}
	b := dialMaster(t, srv, "", id2, "mb")
	if _, err := c.Scale(t.Context(), "web", 2); err != nil {
		t.Fatal(err)
	}
	runAll(t, []*fakeMaster{a, b}, 1) // web.1 goes to mb
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "pin", Command: []string{"x"}, Instances: intp(0), Machine: "ma"}); err != nil {
		t.Fatal(err)
	}
	all, err := c.RebalanceAll(t.Context())
	if err != nil || len(all) != 2 {
		t.Fatalf("RebalanceAll = %+v, %v; want pin and web", all, err)
	}
	if p := all[0]; p.Need != "pin" || len(p.Moves) != 0 || !strings.Contains(p.Note, "pinned to master ma") {
		t.Errorf("pin: %+v, want nothing to move, pinned", p)
	}
	if w := all[1]; w.Need != "web" || len(w.Moves) != 0 || !reflect.DeepEqual(w.Spread, map[string]int{"ma": 1, "mb": 1}) ||
		!strings.Contains(w.Note, "even") {
		t.Errorf("web: %+v, want nothing to move, even on ma and mb", w)
	}
	quiet(a)
	quiet(b)
}

// TestRebalanceReplacementFails: a replacement that exits before its
// approval is dropped; the instance keeps running where it was, with no
// failure counted, and the rebalance stops and says why.
func TestRebalanceReplacementFails(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	events := subscribe(t, srv, c)
	a := dialMaster(t, srv, "", id1, "ma")
	addWeb(t, c, 2)
	old := runAll(t, []*fakeMaster{a}, 2)
	b := dialMaster(t, srv, "", id2, "mb")
	waitMaster(t, c, "mb", func(m *needs.Master) bool { return m.Connected })
	rb, err := c.Rebalance(t.Context(), "web")
	if err != nil || len(rb.Moves) != 1 {
		t.Fatalf("Rebalance = %+v, %v; want one move", rb, err)
	}
	b.takeOffer("web.1") // the highest index moves first
	var g pipes.Grant
	b.expect(pipes.TypeGrant, &g)
	in := instance(getNeed(t, c, "web"), "web.1")
	if in.Handoff == nil || in.Handoff.Alloc != g.Alloc || !strings.Contains(in.Reason, "rebalancing: replacement starting on master mb") {
		t.Errorf("web.1 while its replacement starts = %+v", in)
	}
	b.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: "web.1", Code: -1, Reason: "command not found"})
	e := waitEvent(t, events, 10*time.Second, "need.rebalanced web", func(e lan.Event) bool {
		return e.Kind == lan.EventNeedRebalanced && e.Need == "web"
	})
	if !strings.Contains(e.Message, "stopped") || !strings.Contains(e.Message, "command not found") {
		t.Errorf("need.rebalanced says %q; want that it stopped, and why", e.Message)
	}
	for _, in := range allRunning(t, c, "web", 2).InstanceList {
		if in.Master != "ma" || in.Alloc != old[in.Name].Alloc || in.Handoff != nil || in.Failures != 0 {
			t.Errorf("%s after the failed move = %+v, want still on ma, no failure", in.Name, in)
		}
	}
	quiet(a) // ma was told to stop nothing
	quiet(b) // and mb is offered nothing more: the rebalance stopped
}

func TestRebalanceAPI(t *testing.T) {
	srv, c := startServer(t, lan.Config{})
	for _, tt := range []struct {
		method, path string
		want         int
		wantIn       string
	}{
		{http.MethodPost, "/v1/needs/nope/rebalance", http.StatusNotFound, `need "nope"`},
		{http.MethodGet, "/v1/needs/nope/rebalance", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/v1/rebalance", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/v1/rebalance/web", http.StatusNotFound, "no route"},
	} {
		code, body := call(t, srv, tt.method, tt.path, "", "")
		if code != tt.want || !strings.Contains(errorMessage(t, body), tt.wantIn) {
			t.Errorf("%s %s = %d %s, want %d mentioning %q", tt.method, tt.path, code, body, tt.want, tt.wantIn)
		}
	}
	if _, err := c.Rebalance(t.Context(), "nope"); !errors.Is(err, needs.ErrNotFound) {
		t.Errorf("client Rebalance(nope) = %v, want ErrNotFound", err)
	}
	if all, err := c.RebalanceAll(t.Context()); err != nil || len(all) != 0 {
		t.Errorf("RebalanceAll without needs = %+v, %v; want an empty list", all, err)
	}
	code, body := call(t, srv, http.MethodPost, "/v1/rebalance", "", "")
	if code != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("POST /v1/rebalance without needs = %d %s, want 200 []", code, body)
	}
}
