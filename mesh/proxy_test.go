package mesh_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"berth/mesh"
)

func TestProxyRoundRobinSpreadsExactly(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	_, addr := newTestProxy(t, mesh.Config{}, a, b, c)
	ids := askIDs(t, addr, 30)
	for i, id := range ids {
		if id != ids[i%3] {
			t.Fatalf("connection %d went to %s, want %s (rotation %v)", i, id, ids[i%3], ids[:3])
		}
	}
	if n := count(ids); n["a"] != 10 || n["b"] != 10 || n["c"] != 10 {
		t.Fatalf("spread %v, want 10 each", n)
	}
}

// TestProxySetStrategy: a strategy set on a serving proxy picks the
// backends of the connections that come after it (a master's upstream
// listener takes its target need's balance when the lanmanager sends it).
func TestProxySetStrategy(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	p, addr := newTestProxy(t, mesh.Config{}, a, b, c)
	if n := count(askIDs(t, addr, 6)); n["a"] != 2 || n["b"] != 2 || n["c"] != 2 {
		t.Fatalf("round-robin spread %v, want 2 each", n)
	}
	hash, err := mesh.NewStrategy(mesh.Hash, mesh.StrategyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.SetStrategy(hash)
	if got := p.Strategy().Balance(); got != mesh.Hash {
		t.Fatalf("Strategy().Balance() = %s after SetStrategy(hash)", got)
	}
	if n := count(askIDs(t, addr, 9)); len(n) != 1 {
		t.Fatalf("hash from one client address spread %v, want one backend", n)
	}
	p.SetStrategy(nil)
	if n := count(askIDs(t, addr, 6)); n["a"] != 2 || n["b"] != 2 || n["c"] != 2 {
		t.Fatalf("after SetStrategy(nil), spread %v, want round-robin, 2 each", n)
	}
}

// TestProxyHalfClose: the client's end of stream reaches the backend,
// whose answer still comes back.
func TestProxyHalfClose(t *testing.T) {
	a := startBackend(t, "a")
	_, addr := newTestProxy(t, mesh.Config{}, a)
	c := dialVia(t, addr, "")
	io.WriteString(c, "last words")
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c.r)
	if err != nil || string(rest) != "last words" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
}

func TestProxyLeastConnAvoidsBusyBackend(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	p, addr := newTestProxy(t, mesh.Config{Strategy: mesh.NewLeastConn()}, a)
	for range 10 { // a holds 10 long connections
		if cl := dialVia(t, addr, ""); cl.id != "a" {
			t.Fatalf("only a is in the set, got %s", cl.id)
		}
	}
	if err := p.Update([]mesh.Backend{a.backend(), b.backend(), c.backend()}); err != nil {
		t.Fatal(err)
	}
	n := count(askIDs(t, addr, 40))
	if n["a"] != 0 || n["b"] == 0 || n["c"] == 0 {
		t.Fatalf("spread %v: want none on a (10 open) and some on b and c", n)
	}
}

func TestProxyResourceAvoidsBusyCPU(t *testing.T) {
	clock := newFakeClock()
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	p, addr := newTestProxy(t, mesh.Config{Strategy: mesh.NewResourceAware(mesh.StrategyOptions{
		Heartbeat: time.Second, Now: clock.Now})}, a, b, c)
	report := func(id string, cpu float64) {
		t.Helper()
		if !p.SetStats(id, mesh.Stats{CPUPercent: cpu, HeapUsed: 10, HeapTotal: 100, At: clock.Now()}) {
			t.Fatalf("SetStats(%s): not in the set", id)
		}
	}
	report("a", 5)
	report("b", 90)
	report("c", 5)
	if n := count(askIDs(t, addr, 30)); n["b"] != 0 || n["a"] == 0 || n["c"] == 0 {
		t.Fatalf("b at 90%% CPU: spread %v, want none on b", n)
	}
	// Four heartbeats later only a and c have reported again: b's 90% is
	// unknown now, and b is scored by its connections alone.
	clock.Add(4 * time.Second)
	report("a", 5)
	report("c", 5)
	if n := count(askIDs(t, addr, 30)); n["b"] == 0 {
		t.Fatalf("b's stats stale: spread %v, want b used again", n)
	}
}

func TestProxyHashSticks(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	_, addr := newTestProxy(t, mesh.Config{Strategy: mesh.NewConsistentHash(0)}, a, b, c)
	used := map[string]bool{}
	for i := range 24 {
		from := fmt.Sprintf("127.0.%d.%d", i/8+1, i%8+2)
		first := dialVia(t, addr, from)
		first.Close()
		used[first.id] = true
		for range 3 {
			if cl := dialVia(t, addr, from); cl.id != first.id {
				t.Fatalf("client %s went to %s, then %s", from, first.id, cl.id)
			} else {
				cl.Close()
			}
		}
	}
	if len(used) < 2 {
		t.Fatalf("24 client addresses all went to %v", used)
	}
}

// TestProxySkipsRefusingBackend: a backend that refuses is invisible to
// clients and ejected for 1 s, then 2 s after it refuses again.
func TestProxySkipsRefusingBackend(t *testing.T) {
	clock := newFakeClock()
	a, c := startBackend(t, "a"), startBackend(t, "c")
	p, addr := newTestProxy(t, mesh.Config{Now: clock.Now}, a, c)
	dead := mesh.Backend{ID: "dead", Addr: refusingAddr(t)}
	if err := p.Update([]mesh.Backend{a.backend(), dead, c.backend()}); err != nil {
		t.Fatal(err)
	}
	n := count(askIDs(t, addr, 30))
	if n["a"]+n["c"] != 30 {
		t.Fatalf("spread %v: every connection should reach a or c", n)
	}
	st, _ := status(p, "dead")
	if got := st.EjectedUntil.Sub(clock.Now()); got != time.Second {
		t.Fatalf("dead ejected for %v, want 1s", got)
	}
	clock.Add(1500 * time.Millisecond)
	askIDs(t, addr, 3) // round-robin reaches dead again
	st, _ = status(p, "dead")
	if got := st.EjectedUntil.Sub(clock.Now()); got != 2*time.Second {
		t.Fatalf("dead ejected again for %v, want 2s", got)
	}
}

// TestProxyRemovedBackendDrains: a removed backend gets no new connection
// at once; its open one works through the grace period and is closed at
// its end.
func TestProxyRemovedBackendDrains(t *testing.T) {
	const grace = 400 * time.Millisecond
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p, addr := newTestProxy(t, mesh.Config{Grace: grace}, a, b)
	onA := dialVia(t, addr, "") // round-robin: a first
	finishes := dialVia(t, addr, "")
	finishes = dialVia(t, addr, "") // a again
	if onA.id != "a" || finishes.id != "a" {
		t.Fatalf("want both on a, got %s and %s", onA.id, finishes.id)
	}
	removed := time.Now()
	if err := p.Update([]mesh.Backend{b.backend()}); err != nil {
		t.Fatal(err)
	}
	acceptedBefore := a.accepted.Load()
	if n := count(askIDs(t, addr, 10)); n["b"] != 10 {
		t.Fatalf("after removing a: spread %v, want all on b", n)
	}
	if got := a.accepted.Load(); got != acceptedBefore {
		t.Fatalf("a accepted %d connections after its removal", got-acceptedBefore)
	}
	onA.echo(t, "still here")
	if st, ok := status(p, "a"); !ok || !st.Draining || st.Conns != 2 {
		t.Fatalf("a's status during grace: %+v, %v", st, ok)
	}
	// One finishes on its own within the grace period.
	finishes.echo(t, "bye")
	finishes.Close()
	onA.waitClosed(t, 5*time.Second)
	if d := time.Since(removed); d < grace {
		t.Fatalf("closed %v after removal, before the %v grace", d, grace)
	}
	retryUntil(t, 5*time.Second, "a no longer listed", func() bool {
		_, ok := status(p, "a")
		return !ok
	})
}

// TestProxyGraceFrom: the grace of a removed backend is GraceFrom's at
// the removal, over Grace; Grace when GraceFrom says 0. Either way the
// open connection works during the grace and is closed once it is over,
// not before.
func TestProxyGraceFrom(t *testing.T) {
	const short = time.Second
	var from atomic.Int64
	for _, tt := range []struct {
		name  string
		from  time.Duration
		grace time.Duration
	}{
		{"GraceFrom wins", short, time.Hour},
		{"Grace when GraceFrom says 0", 0, short},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := startBackend(t, "a"), startBackend(t, "b")
			from.Store(int64(time.Hour)) // at New: only the value at the removal counts
			p, addr := newTestProxy(t, mesh.Config{Grace: tt.grace, GraceFrom: func() time.Duration { return time.Duration(from.Load()) }}, a, b)
			onA := dialVia(t, addr, "")
			if onA.id != "a" {
				t.Fatalf("first connection on %s, want a", onA.id)
			}
			from.Store(int64(tt.from))
			removed := time.Now()
			if err := p.Update([]mesh.Backend{b.backend()}); err != nil {
				t.Fatal(err)
			}
			onA.echo(t, "during the grace")
			onA.waitClosed(t, 10*time.Second) // an hour's grace would fail here
			if d := time.Since(removed); d < short {
				t.Fatalf("closed %v after removal, before the %v grace", d, short)
			}
		})
	}
}

// TestProxyBackendKilledMidStream: killing a backend ends only its
// connections; the others go on and new ones succeed.
func TestProxyBackendKilledMidStream(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	_, addr := newTestProxy(t, mesh.Config{}, a, b, c)
	var open []*client
	for range 6 {
		cl := dialVia(t, addr, "")
		cl.echo(t, "hello")
		open = append(open, cl)
	}
	b.kill()
	for _, cl := range open {
		if cl.id == "b" {
			cl.waitClosed(t, 5*time.Second)
		} else {
			cl.echo(t, "after b died")
		}
	}
	n := count(askIDs(t, addr, 12))
	if n["a"]+n["c"] != 12 {
		t.Fatalf("after b died: spread %v, want every connection on a or c", n)
	}
}

// TestProxyNoLeak: clients and backends that vanish mid-stream, then
// Close, leave as many goroutines and fds as before.
//
// The runtime keeps the pipes of splice(2) in a sync.Pool and closes them
// when a collection drops them, so both counts are taken after collecting.
func TestProxyNoLeak(t *testing.T) {
	collect()
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	func() {
		a, b := startBackend(t, "a"), startBackend(t, "b")
		p, addr := newTestProxy(t, mesh.Config{Grace: time.Hour}, a, b)
		var open []*client
		for range 20 {
			cl := dialVia(t, addr, "")
			cl.echo(t, "x")
			open = append(open, cl)
		}
		for i, cl := range open[:10] {
			if i%2 == 0 { // vanish with a reset
				cl.Conn.(*net.TCPConn).SetLinger(0)
			}
			cl.Close()
		}
		b.kill()
		p.Update([]mesh.Backend{b.backend()}) // a drains for an hour
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := p.Listen("127.0.0.1:0"); err != mesh.ErrClosed {
			t.Fatalf("Listen after Close: %v", err)
		}
		for _, cl := range open[10:] {
			cl.waitClosed(t, 5*time.Second)
			cl.Close()
		}
		a.kill()
	}()
	var g, fd int
	retryUntil(t, 5*time.Second, "goroutines and fds back to their count before", func() bool {
		collect()
		g, fd = runtime.NumGoroutine(), openFDs(t)
		return g <= g0 && fd <= fd0
	})
	t.Logf("goroutines %d → %d, fds %d → %d", g0, g, fd0, fd)
}

// collect runs the collector twice: a sync.Pool keeps what it drops for
// one more cycle.
func collect() {
	runtime.GC()
	runtime.GC()
}
