package mesh_test

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"berth/mesh"
)

func cands(ids ...string) []mesh.Candidate {
	out := make([]mesh.Candidate, len(ids))
	for i, id := range ids {
		out[i] = mesh.Candidate{ID: id}
	}
	return out
}

func TestRoundRobinExact(t *testing.T) {
	s := mesh.NewRoundRobin()
	c := cands("a", "b", "c")
	for i := range 300 {
		if got := s.Pick(c, netip.Addr{}); got != i%3 {
			t.Fatalf("pick %d: %d, want %d", i, got, i%3)
		}
	}
	if got := s.Pick(nil, netip.Addr{}); got != -1 {
		t.Fatalf("empty set: %d, want -1", got)
	}
}

// TestLeastConnNeverPicksTheBusiest: with two distinct choices, the
// candidate with the most connections never wins unless tied.
func TestLeastConnNeverPicksTheBusiest(t *testing.T) {
	s := mesh.NewLeastConn()
	c := cands("a", "b", "c")
	c[0].Conns = 5
	c[2].Conns = 1
	n := map[int]int{}
	for range 3000 {
		n[s.Pick(c, netip.Addr{})]++
	}
	if n[0] != 0 {
		t.Fatalf("busiest picked %d times of 3000", n[0])
	}
	// b is the lower of every pair it is in (2/3 of pairs); c wins only
	// against a (1/3).
	if n[1] < 1800 || n[2] < 800 {
		t.Fatalf("picks %v: want about 2000 b and 1000 c", n)
	}
	if got := s.Pick(c[:1], netip.Addr{}); got != 0 {
		t.Fatalf("one candidate: %d", got)
	}
}

func TestScore(t *testing.T) {
	now := time.Unix(1000, 0)
	stale := 30 * time.Second
	w := mesh.DefaultWeights
	for _, tt := range []struct {
		name string
		c    mesh.Candidate
		want float64
	}{
		{"no stats", mesh.Candidate{Conns: 3}, 30},
		{"fresh", mesh.Candidate{Conns: 3, Stats: &mesh.Stats{CPUPercent: 50, HeapUsed: 1, HeapTotal: 4, At: now.Add(-time.Second)}}, 30 + 100 + 25},
		{"no heap total", mesh.Candidate{Conns: 1, Stats: &mesh.Stats{CPUPercent: 10, HeapUsed: 5, At: now}}, 10 + 20},
		{"just in time", mesh.Candidate{Stats: &mesh.Stats{CPUPercent: 10, At: now.Add(-stale)}}, 20},
		{"stale busy", mesh.Candidate{Conns: 2, Stats: &mesh.Stats{CPUPercent: 99, At: now.Add(-stale - time.Millisecond)}}, 20},
		{"stale idle", mesh.Candidate{Conns: 2, Stats: &mesh.Stats{CPUPercent: 0, At: now.Add(-time.Hour)}}, 20},
		{"future", mesh.Candidate{Stats: &mesh.Stats{CPUPercent: 99, At: now.Add(time.Hour)}}, 0},
	} {
		if got := mesh.Score(tt.c, w, now, stale); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: score %v, want %v", tt.name, got, tt.want)
		}
	}
	w2 := mesh.Weights{Conns: 1, CPU: 0, Heap: 0}
	if got := mesh.Score(mesh.Candidate{Conns: 4, Stats: &mesh.Stats{CPUPercent: 90, At: now}}, w2, now, stale); got != 4 {
		t.Errorf("weights conns=1,cpu=0,heap=0: score %v, want 4", got)
	}
}

// TestResourceTiesRotate: equal scores share the load exactly.
func TestResourceTiesRotate(t *testing.T) {
	clock := newFakeClock()
	s := mesh.NewResourceAware(mesh.StrategyOptions{Now: clock.Now})
	c := cands("a", "b", "c", "d")
	c[0].Conns = 1 // a scores 10, the others 0
	n := map[int]int{}
	for range 300 {
		n[s.Pick(c, netip.Addr{})]++
	}
	if n[0] != 0 || n[1] != 100 || n[2] != 100 || n[3] != 100 {
		t.Fatalf("picks %v, want 0 a and 100 each of b, c, d", n)
	}
}

func TestResourceStaleIsUnknown(t *testing.T) {
	clock := newFakeClock()
	s := mesh.NewResourceAware(mesh.StrategyOptions{Heartbeat: time.Second, Now: clock.Now})
	c := cands("a", "b")
	c[0].Stats = &mesh.Stats{CPUPercent: 90, At: clock.Now()}
	c[1].Conns = 5 // 50 < 180
	if got := s.Pick(c, netip.Addr{}); got != 1 {
		t.Fatalf("busy a: picked %d, want b", got)
	}
	clock.Add(3*time.Second + time.Millisecond)
	// a's report is older than three heartbeats: scored 0 by its connections.
	if got := s.Pick(c, netip.Addr{}); got != 0 {
		t.Fatalf("a's stats stale: picked %d, want a (scored by connections alone)", got)
	}
}

func ips(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range n {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

func idsN(n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("web.%d", i)
	}
	return out
}

func assign(s mesh.Strategy, c []mesh.Candidate, clients []netip.Addr) []string {
	out := make([]string, len(clients))
	for i, ip := range clients {
		out[i] = c[s.Pick(c, ip)].ID
	}
	return out
}

// TestHashStickyAndMinimalMovement: a client keeps its backend while the
// set is stable; adding a sixth backend moves about 1/6 of the clients,
// all to it; removing one moves only that one's clients.
func TestHashStickyAndMinimalMovement(t *testing.T) {
	const clients = 20000
	s := mesh.NewConsistentHash(0)
	cl := ips(clients)
	five := cands(idsN(5)...)
	before := assign(s, five, cl)
	if again := assign(s, five, cl); fmt.Sprint(again) != fmt.Sprint(before) {
		t.Fatal("a client changed backend on a stable set")
	}
	for id, n := range count(before) {
		if share := float64(n) / clients; share < 0.2*0.75 || share > 0.2*1.25 {
			t.Errorf("%s has %.3f of the clients, want 0.2±25%%", id, share)
		}
	}

	six := cands(idsN(6)...)
	after := assign(s, six, cl)
	moved := 0
	for i := range cl {
		if after[i] != before[i] {
			moved++
			if after[i] != "web.5" {
				t.Fatalf("client %s moved from %s to %s, not to the new backend", cl[i], before[i], after[i])
			}
		}
	}
	frac := float64(moved) / clients
	t.Logf("adding 1 to 5 backends moved %.3f of the clients (1/6 = %.3f)", frac, 1.0/6)
	if frac < 0.10 || frac > 0.24 {
		t.Errorf("adding a backend moved %.3f of the clients, want about 1/6", frac)
	}

	four := append(cands(idsN(5)...)[:2], cands(idsN(5)...)[3:]...) // web.2 removed
	gone := assign(s, four, cl)
	moved = 0
	for i := range cl {
		if gone[i] != before[i] {
			moved++
			if before[i] != "web.2" {
				t.Fatalf("client %s moved from %s, which stayed", cl[i], before[i])
			}
		}
	}
	if want := count(before)["web.2"]; moved != want {
		t.Errorf("removing web.2 moved %d clients, want its %d", moved, want)
	}
	t.Logf("removing 1 of 5 backends moved %.3f of the clients", float64(moved)/clients)

	// Another ring from the same set in another order (another master)
	// sends each client to the same backend.
	rev := cands("web.4", "web.3", "web.2", "web.1", "web.0")
	if other := assign(mesh.NewConsistentHash(0), rev, cl); fmt.Sprint(other) != fmt.Sprint(before) {
		t.Error("the same set in another order sends clients elsewhere")
	}
}

func TestParseBalance(t *testing.T) {
	for _, b := range mesh.Balances {
		got, err := mesh.ParseBalance(string(b))
		if err != nil || got != b {
			t.Errorf("ParseBalance(%q) = %q, %v", b, got, err)
		}
		s, err := mesh.NewStrategy(b, mesh.StrategyOptions{})
		if err != nil || s.Balance() != b {
			t.Errorf("NewStrategy(%q): %v, %v", b, s, err)
		}
	}
	if got, err := mesh.ParseBalance(""); got != mesh.RoundRobin || err != nil {
		t.Errorf("ParseBalance(\"\") = %q, %v; want the default round-robin", got, err)
	}
	_, err := mesh.ParseBalance("least-connections")
	if !errors.Is(err, mesh.ErrUnknownBalance) || err.Error() != `unknown balance "least-connections": want round-robin, least-conn, resource or hash` {
		t.Errorf("ParseBalance(least-connections): %v", err)
	}
}

func TestParseWeights(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want mesh.Weights
		err  string
	}{
		{"", mesh.DefaultWeights, ""},
		{"cpu=5", mesh.Weights{Conns: 10, CPU: 5, Heap: 100}, ""},
		{" heap = 0 , conns=1.5", mesh.Weights{Conns: 1.5, CPU: 2, Heap: 0}, ""},
		{"cpu=x", mesh.Weights{}, `bad weights "cpu=x": want a number from 0 to 1e6`},
		{"conns=1,mem=2", mesh.Weights{}, `bad weights "mem=2" in "conns=1,mem=2": want conns, cpu or heap`},
		{"cpu=1,cpu=2", mesh.Weights{}, `bad weights "cpu=2" in "cpu=1,cpu=2": given twice`},
		{"cpu=-1", mesh.Weights{}, `bad weights "cpu=-1": want a number from 0 to 1e6`},
		{"cpu=NaN", mesh.Weights{}, `bad weights "cpu=NaN": want a number from 0 to 1e6`},
		{"cpu=1e7", mesh.Weights{}, `bad weights "cpu=1e7": want a number from 0 to 1e6`},
		{"cpu", mesh.Weights{}, `bad weights "cpu": want key=number`},
		{"cpu=1,", mesh.Weights{}, `bad weights "" in "cpu=1,": want key=number`},
	} {
		got, err := mesh.ParseWeights(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseWeights(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || err.Error() != tt.err || !errors.Is(err, mesh.ErrBadWeights)):
			t.Errorf("ParseWeights(%q): error %v, want %s", tt.in, err, tt.err)
		}
	}
}
