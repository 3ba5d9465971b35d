package master_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// fakeLan is a lanmanager that the test drives by hand: it accepts links
// on /v1/link, reads each hello and hands the link to the test.
type fakeLan struct {
	addr   string
	links  chan *fakeLink
	refuse atomic.Bool // answer 503 to new links
}

type fakeLink struct {
	conn  *pipes.Conn
	hello pipes.Hello
}

func newFakeLan(t *testing.T) *fakeLan {
	t.Helper()
	f := &fakeLan{links: make(chan *fakeLink, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/link" || f.refuse.Load() {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		conn, err := pipes.AcceptWS(w, r)
		if err != nil {
			return
		}
		msg, err := conn.Recv()
		if err != nil || msg.Type != pipes.TypeHello {
			conn.Close()
			return
		}
		l := &fakeLink{conn: conn}
		if err := msg.Decode(&l.hello); err != nil {
			t.Errorf("bad hello: %v", err)
		}
		f.links <- l
	}))
	t.Cleanup(func() {
		for {
			select {
			case l := <-f.links:
				l.conn.Close()
			default:
				srv.Close()
				return
			}
		}
	})
	f.addr = strings.TrimPrefix(srv.URL, "http://")
	return f
}

// next returns the next link a master opened.
func (f *fakeLan) next(t *testing.T, within time.Duration) *fakeLink {
	t.Helper()
	select {
	case l := <-f.links:
		t.Cleanup(func() { l.conn.Close() })
		return l
	case <-time.After(within):
		t.Fatalf("no link from the master within %s", within)
		return nil
	}
}

// recvAll reads the link's frames into a channel until it fails; the
// channel is closed then. Pings are answered if pong is set.
func (l *fakeLink) recvAll(pong bool) <-chan *pipes.Msg {
	ch := make(chan *pipes.Msg, 64)
	go func() {
		defer close(ch)
		for {
			msg, err := l.conn.Recv()
			if err != nil {
				return
			}
			if pong && msg.Type == pipes.TypePing {
				l.conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID})
			}
			ch <- msg
		}
	}()
	return ch
}

// TestLinkDroppedWhenSilent: a lanmanager that accepts the hello and then
// says nothing is dropped after its TTL, and the master dials again.
func TestLinkDroppedWhenSilent(t *testing.T) {
	f := newFakeLan(t)
	a := openAgent(t, testConfig(t, f.addr))
	l := f.next(t, 10*time.Second)
	const ttl = 400 * time.Millisecond
	// Before the send: the master hears the welcome after this instant,
	// so its TTL ends after welcomed+ttl (taken after the send, the test
	// could be late by however long it waited for a core: 395 ms seen).
	welcomed := time.Now()
	if err := l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 50, TTLMS: int(ttl / time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	pings := 0
	frames := l.recvAll(false)
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case msg, ok := <-frames:
			if !ok {
				open = false
			} else if msg.Type == pipes.TypePing {
				pings++
			}
		case <-deadline:
			t.Fatal("the master kept a silent link for 10s")
		}
	}
	dropped := time.Since(welcomed)
	if pings == 0 {
		t.Error("the master sent no ping before dropping the link")
	}
	if dropped < ttl {
		t.Errorf("the link was dropped %s after the last frame, before the TTL of %s", dropped, ttl)
	}
	again := f.next(t, 10*time.Second)
	t.Logf("silent lanmanager: %d pings, link dropped %s after the welcome (TTL %s), redialled %s later",
		pings, dropped.Round(time.Millisecond), ttl, (time.Since(welcomed) - dropped).Round(time.Millisecond))
	if again.hello.ID != a.ID() {
		t.Errorf("hello from %q, want %q", again.hello.ID, a.ID())
	}
}

// TestLinkKeptWhileAnswered: pongs keep a link alive well past its TTL.
func TestLinkKeptWhileAnswered(t *testing.T) {
	f := newFakeLan(t)
	a := openAgent(t, testConfig(t, f.addr))
	l := f.next(t, 10*time.Second)
	const ttl, hb = 200 * time.Millisecond, 40 * time.Millisecond
	if err := l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: int(hb / time.Millisecond), TTLMS: int(ttl / time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	frames := l.recvAll(true)
	deadline := time.After(20 * time.Second)
	for pings := 0; pings < 20 || time.Since(began) < 3*ttl; {
		select {
		case msg, ok := <-frames:
			if !ok {
				t.Fatalf("the master dropped an answered link after %d pings", pings)
			}
			if msg.Type == pipes.TypePing {
				pings++
			}
		case <-deadline:
			t.Fatal("too few pings in 20s")
		}
	}
	select {
	case l2 := <-f.links:
		l2.conn.Close()
		t.Fatal("the master opened a second link while the first was answered")
	default:
	}
	if !a.Linked() {
		t.Error("Linked() = false on a live link")
	}
}

// TestStopAfterDisconnect: with stopafterdisconnect set, a master that
// cannot reach the lanmanager stops its children once that long has
// passed, and reports their exits in the next hello.
func TestStopAfterDisconnect(t *testing.T) {
	f := newFakeLan(t)
	cfg := testConfig(t, f.addr)
	const limit = time.Second
	cfg.StopAfterDisconnect = limit.String()
	a := openAgent(t, cfg)
	l := f.next(t, 10*time.Second)
	l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 100, TTLMS: 2000})
	frames := l.recvAll(true)
	exe, _ := os.Executable()
	const alloc = "alloc-0001"
	need := needs.Need{Name: "svc", Command: []string{exe}, Instances: 1, Protocols: []needs.Protocol{needs.HTTP}}
	if err := l.conn.SendBody(pipes.TypeGrant, 0, &pipes.Grant{Instance: "svc.0", Alloc: alloc, Need: need}); err != nil {
		t.Fatal(err)
	}
	var pid int
	for pid == 0 {
		select {
		case msg, ok := <-frames:
			if !ok {
				t.Fatal("link closed before started")
			}
			if msg.Type == pipes.TypeStarted {
				var s pipes.Started
				if err := msg.Decode(&s); err != nil {
					t.Fatal(err)
				}
				pid = s.PID
			}
			if msg.Type == pipes.TypeExited {
				t.Fatalf("child exited: %s", msg.Body)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no started report")
		}
	}
	f.refuse.Store(true)
	l.conn.Close()
	cut := time.Now()
	waitFor(t, 10*time.Second, "the master to notice", func() bool { return !a.Linked() })
	waitFor(t, 20*time.Second, "the child to be stopped", func() bool { return len(a.Children()) == 0 && !alive(pid) })
	stopped := time.Since(cut)
	if stopped < limit {
		t.Errorf("children stopped %s after the link went down, before stopafterdisconnect %s", stopped, limit)
	}
	t.Logf("link cut; child stopped %s later (stopafterdisconnect %s)", stopped.Round(time.Millisecond), limit)
	f.refuse.Store(false)
	again := f.next(t, 10*time.Second)
	i := slices.IndexFunc(again.hello.Exits, func(e pipes.Exited) bool { return e.Alloc == alloc })
	if i < 0 {
		t.Fatalf("hello exits %+v lack %s", again.hello.Exits, alloc)
	}
	if e := again.hello.Exits[i]; !e.Requested || e.Instance != "svc.0" {
		t.Errorf("exit %+v, want svc.0 stopped on request", e)
	}
	if len(again.hello.Allocs) != 0 {
		t.Errorf("hello still lists %+v", again.hello.Allocs)
	}
}

// TestLinkStopGraceFromWelcome: the mesh's grace for the connections of an
// instance that left the running set is the stop grace the lanmanager's
// welcome gives, how long the instance itself has to finish; a welcome
// without one (an older lanmanager) leaves the master's own.
func TestLinkStopGraceFromWelcome(t *testing.T) {
	f := newFakeLan(t)
	a := openAgent(t, testConfig(t, f.addr)) // StopGrace 2 s
	if got := a.MeshGrace(); got != 2*time.Second {
		t.Fatalf("before any welcome: %v, want the master's 2s", got)
	}
	l := f.next(t, 10*time.Second)
	l.recvAll(true)
	if err := l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 1000, TTLMS: 5000, StopGraceMS: 45_000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the welcome's stop grace", func() bool { return a.MeshGrace() == 45*time.Second })
	l.conn.Close()
	l = f.next(t, 10*time.Second)
	l.recvAll(true)
	if err := l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 1000, TTLMS: 5000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the master's own stop grace again", func() bool { return a.MeshGrace() == 2*time.Second })
}
