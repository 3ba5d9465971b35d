package lan_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// bid expects an offer for instance on m and answers ok (or no, with a reason).
func bid(m *fakeMaster, instance string, ok bool) {
	m.t.Helper()
	var o pipes.Offer
	m.expect(pipes.TypeOffer, &o)
	if o.Instance != instance {
		m.t.Fatalf("master %s: offer for %s, want %s", m.name, o.Instance, instance)
	}
	b := &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: ok}
	if !ok {
		b.Reason = "busy"
	}
	m.send(pipes.TypeBid, b)
}

// grantOn waits for a grant on any of ms and returns it with its master.
func grantOn(t *testing.T, ms ...*fakeMaster) (*fakeMaster, pipes.Grant) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, m := range ms {
			select {
			case msg, ok := <-m.msgs:
				if !ok {
					t.Fatalf("master %s: link closed", m.name)
				}
				if msg.Type != pipes.TypeGrant {
					t.Fatalf("master %s: got %s, want a grant", m.name, msg.Type)
				}
				var g pipes.Grant
				if err := msg.Decode(&g); err != nil {
					t.Fatal(err)
				}
				return m, g
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatal("no grant within 10s")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func addWebPolicy(t *testing.T, c *lan.Client, n int, p *needs.RestartPolicy) {
	t.Helper()
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"/bin/web"},
		Instances: intp(n), Protocols: []needs.Protocol{needs.HTTP}, Restart: p}); err != nil {
		t.Fatalf("AddNeed: %v", err)
	}
}

// TestRestartPolicyLocalAttempts: with local_attempts 2, the first two
// consecutive failures are retried on the master where they happened,
// although another master would win the round; the third moves away.
func TestRestartPolicyLocalAttempts(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	m1, m2 := dialMaster(t, srv, "", id1, "m1"), dialMaster(t, srv, "", id2, "m2")
	addWebPolicy(t, c, 1, &needs.RestartPolicy{LocalAttempts: 2, Delay: needs.Duration(10 * time.Millisecond), Factor: 1})

	// First placement: m1 says no, so m2 gets it.
	bid(m1, "web.0", false)
	bid(m2, "web.0", true)
	on, g := grantOn(t, m1, m2)
	if on != m2 {
		t.Fatalf("first grant on %s, want m2", on.name)
	}
	// With equal load m1 wins every round on its name, except where the
	// policy says otherwise.
	for failure, want := range []*fakeMaster{m2, m2, m1} {
		on.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: "web.0", Code: 1})
		bid(m1, "web.0", true)
		bid(m2, "web.0", true)
		on, g = grantOn(t, m1, m2)
		in := instance(getNeed(t, c, "web"), "web.0")
		if on != want || in.Master != want.name || in.Failures != failure+1 || in.Restarts != failure+1 {
			t.Fatalf("after failure %d: granted to %s, instance %+v; want %s", failure+1, on.name, in, want.name)
		}
	}
}

// TestRestartPolicyBackoffAndReset: the delays follow the policy (delay ×
// factor^(failures-1), capped), and the failure count starts over after
// reset_after of good running. The clock is fake: the delays are exact.
func TestRestartPolicyBackoffAndReset(t *testing.T) {
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{Clock: clock.Now, MasterTTL: 24 * time.Hour, BidWindow: time.Hour})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWebPolicy(t, c, 1, &needs.RestartPolicy{Delay: needs.Duration(time.Second), Factor: 3,
		MaxDelay: needs.Duration(5 * time.Second), ResetAfter: needs.Duration(time.Minute)})
	port := listen(t)
	run := func() pipes.Grant {
		t.Helper()
		m.takeOffer("web.0")
		var g pipes.Grant
		m.expect(pipes.TypeGrant, &g)
		m.send(pipes.TypeStarted, startedFor(g, port))
		m.expect(pipes.TypeApprove, nil)
		return g
	}
	fail := func(g pipes.Grant) *needs.Instance {
		t.Helper()
		m.send(pipes.TypeExited, &pipes.Exited{Alloc: g.Alloc, Instance: "web.0", Code: 1})
		return waitEvent(t, events, 10*time.Second, "web.0 backoff", instanceEvent("web.0", needs.Backoff)).Instance
	}
	g := run()
	for i, want := range []time.Duration{time.Second, 3 * time.Second, 5 * time.Second, 5 * time.Second} {
		in := fail(g)
		if d := in.NextAttempt.Sub(in.Since); d != want || in.Failures != i+1 {
			t.Fatalf("failure %d: next attempt after %v with %d failures, want %v and %d", i+1, d, in.Failures, want, i+1)
		}
		// Offered again once the clock reaches the attempt.
		clock.Set(clock.Now().Add(want))
		g = run()
	}
	clock.Set(clock.Now().Add(time.Minute)) // a minute of good running
	in := fail(g)
	if d := in.NextAttempt.Sub(in.Since); in.Failures != 1 || d != time.Second || in.Restarts != 5 {
		t.Errorf("after a stable minute: %d failures, next after %v, %d restarts; want 1, 1s, 5", in.Failures, d, in.Restarts)
	}
}

// TestNeedRestart: POST /v1/needs/{name}/restart retries backed-off
// instances now, failure count reset, and leaves the others alone.
func TestNeedRestart(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: time.Second})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	addWebPolicy(t, c, 2, &needs.RestartPolicy{Delay: needs.Duration(time.Hour)})
	gs := runAll(t, []*fakeMaster{m}, 2)
	m.send(pipes.TypeExited, &pipes.Exited{Alloc: gs["web.0"].Alloc, Instance: "web.0", Code: 4})
	ev := waitEvent(t, events, 10*time.Second, "web.0 backoff", instanceEvent("web.0", needs.Backoff))
	if d := ev.Instance.NextAttempt.Sub(ev.Instance.Since); d != time.Hour {
		t.Fatalf("next attempt in %v, want 1h", d)
	}

	code, body := call(t, srv, http.MethodPost, "/v1/needs/web/restart", "", "")
	if code != http.StatusOK {
		t.Fatalf("POST restart = %d %s", code, body)
	}
	st, err := c.RestartNeed(t.Context(), "web") // again, through the client: nothing left to retry
	if err != nil {
		t.Fatal(err)
	}
	w0, w1 := instance(st, "web.0"), instance(st, "web.1")
	if w0.State != needs.Pending && w0.State != needs.Starting || w0.Failures != 0 || w0.Restarts != 1 ||
		w0.LastExit != "exit code 4" || !w0.NextAttempt.IsZero() {
		t.Errorf("web.0 after restart = %+v, want pending, failures reset, restarts and last exit kept", w0)
	}
	if w1.State != needs.Running || w1.Alloc != gs["web.1"].Alloc {
		t.Errorf("web.1 after restart = %+v, want untouched", w1)
	}
	waitEvent(t, events, 10*time.Second, "need.restarted", func(e lan.Event) bool {
		return e.Kind == lan.EventNeedRestarted && e.Need == "web" && strings.HasPrefix(e.Message, "1 ")
	})
	m.takeOffer("web.0") // now, not in an hour

	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/v1/needs/nope/restart", http.StatusNotFound},
		{http.MethodGet, "/v1/needs/web/restart", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/needs/web/restart/now", http.StatusNotFound},
	} {
		code, body := call(t, srv, tt.method, tt.path, "", "")
		if code != tt.want {
			t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, code, body, tt.want)
		}
		errorMessage(t, body)
	}
}

// TestRestartPolicyPersists: a need's policy and socket activation survive
// a restart, and read back as duration strings.
func TestRestartPolicyPersists(t *testing.T) {
	cfg := lan.Config{DataDir: t.TempDir()}
	srv, c := startServer(t, cfg)
	p := &needs.RestartPolicy{LocalAttempts: 3, Delay: needs.Duration(1500 * time.Millisecond), Factor: 1.5}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"x"}, Protocols: []needs.Protocol{needs.TCP},
		Restart: p, SocketActivation: true}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, c = startServer(t, cfg)
	st := getNeed(t, c, "web")
	if st.Restart == nil || *st.Restart != *p || !st.SocketActivation {
		t.Errorf("after a restart: restart %+v, socket activation %v; want %+v, true", st.Restart, st.SocketActivation, p)
	}
	code, body := call(t, srv, http.MethodGet, "/v1/needs/web", "", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"delay": "1.5s"`) || !strings.Contains(string(body), `"socket_activation": true`) {
		t.Errorf("GET /v1/needs/web = %d %s, want the policy with duration strings", code, body)
	}
}
