package child_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/child"
	"berth/internal/freeports"
	"berth/internal/leakcheck"
	"berth/ipchub"
	"berth/needs"
)

// testHub is an ipchub served on a fixed loopback address, which restart
// keeps.
type testHub struct {
	t    *testing.T
	addr string // host:port
	opts ipchub.Options

	hub    *ipchub.Server
	srv    *http.Server
	served chan struct{} // closed when srv.Serve returns; nil when stopped
}

// startHub serves a hub with opts on a loopback port; Cleanup stops it.
func startHub(t *testing.T, opts ipchub.Options) *testHub {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	// A port from freeports, not one the kernel picks: while the hub is
	// stopped, its port stays reserved for this test. A port from the
	// ephemeral range could be given to a hub of another package's test run
	// at the same time, and a client "without a hub" reconnect to that one.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeports.Port(t)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &testHub{t: t, addr: addr, opts: opts}
	h.serve(ln)
	t.Cleanup(h.stop)
	return h
}

func (h *testHub) url() string { return "ws://" + h.addr }

func (h *testHub) serve(ln net.Listener) {
	h.hub = ipchub.NewServer(h.opts)
	h.srv = &http.Server{Handler: h.hub}
	h.served = make(chan struct{})
	srv, served := h.srv, h.served
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
}

// stop closes the hub (going away to every peer) and its server.
func (h *testHub) stop() {
	if h.served == nil {
		return
	}
	h.hub.Close()
	h.srv.Close()
	<-h.served
	h.served = nil
}

// restart stops the hub and serves a new one on the same address.
func (h *testHub) restart() {
	h.t.Helper()
	h.stop()
	var ln net.Listener
	waitUntil(h.t, "the hub's address is free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", h.addr)
		return err == nil
	})
	h.serve(ln)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recorder keeps what an IPC client's callbacks were given.
type recorder struct {
	mu          sync.Mutex // Protects following.
	msgs        []string
	joins       []string
	leaves      []string
	connects    int
	disconnects []error
}

// options returns opts with the recorder's callbacks.
func (r *recorder) options(opts child.IPCOptions) child.IPCOptions {
	opts.OnMessage = func(m []byte) { r.mu.Lock(); r.msgs = append(r.msgs, string(m)); r.mu.Unlock() }
	opts.OnJoin = func(id string) { r.mu.Lock(); r.joins = append(r.joins, id); r.mu.Unlock() }
	opts.OnLeave = func(id string) { r.mu.Lock(); r.leaves = append(r.leaves, id); r.mu.Unlock() }
	opts.OnConnect = func() { r.mu.Lock(); r.connects++; r.mu.Unlock() }
	opts.OnDisconnect = func(err error) { r.mu.Lock(); r.disconnects = append(r.disconnects, err); r.mu.Unlock() }
	return opts
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// has reports whether msg was received.
func (r *recorder) has(msg string) bool { return slices.Contains(r.messages(), msg) }

// ipcPeer is a test client with its recorder.
type ipcPeer struct {
	*child.IPC
	rec *recorder
}

// fastOptions are IPCOptions for tests: quick reconnects.
func fastOptions(t *testing.T, addr, id string) child.IPCOptions {
	return child.IPCOptions{
		Addr: addr, Group: "g1", ID: id,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
		Logger: testLogger(t).With("client", id),
	}
}

// dialPeer connects a recorded client with opts; Cleanup closes it.
func dialPeer(t *testing.T, opts child.IPCOptions) *ipcPeer {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	c, err := child.DialIPC(ctx, rec.options(opts))
	if err != nil {
		t.Fatalf("DialIPC %s: %v", opts.ID, err)
	}
	t.Cleanup(func() { c.Close() })
	return &ipcPeer{IPC: c, rec: rec}
}

func (p *ipcPeer) send(t *testing.T, to, msg string) {
	t.Helper()
	if err := p.Send(t.Context(), to, []byte(msg)); err != nil {
		t.Fatalf("%s: Send to %s: %v", p.ID(), to, err)
	}
}

func (p *ipcPeer) broadcast(t *testing.T, msg string) {
	t.Helper()
	if err := p.Broadcast(t.Context(), []byte(msg)); err != nil {
		t.Fatalf("%s: Broadcast: %v", p.ID(), err)
	}
}

// waitMessages waits until p received exactly want, in order.
func (p *ipcPeer) waitMessages(t *testing.T, want ...string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%s receives %d messages", p.ID(), len(want)), func() bool {
		return len(p.rec.messages()) >= len(want)
	})
	if got := p.rec.messages(); !slices.Equal(got, want) {
		t.Fatalf("%s received %q, want %q", p.ID(), got, want)
	}
}

func dialThree(t *testing.T, h *testHub) (a, b, c *ipcPeer) {
	t.Helper()
	a = dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	b = dialPeer(t, fastOptions(t, h.url(), "peer-b"))
	c = dialPeer(t, fastOptions(t, h.url(), "peer-c"))
	// a sees b and c join, b sees c: then every one is in the group.
	waitUntil(t, "peer-a sees two joins", func() bool { a.rec.mu.Lock(); defer a.rec.mu.Unlock(); return len(a.rec.joins) == 2 })
	return a, b, c
}

// TestIPCSendBroadcast: Send reaches one peer, Broadcast every other, in
// the order sent; payloads that look like the hub's own frames arrive
// unchanged and are not taken for notices.
func TestIPCSendBroadcast(t *testing.T) {
	h := startHub(t, ipchub.Options{Token: "tok"})
	setToken := func(o child.IPCOptions) child.IPCOptions { o.Token = "tok"; return o }
	a := dialPeer(t, setToken(fastOptions(t, h.url(), "peer-a")))
	b := dialPeer(t, setToken(fastOptions(t, h.url(), "peer-b")))
	c := dialPeer(t, setToken(fastOptions(t, h.url(), "peer-c")))
	waitUntil(t, "peer-a sees two joins", func() bool { a.rec.mu.Lock(); defer a.rec.mu.Unlock(); return len(a.rec.joins) == 2 })

	a.send(t, "peer-b", "for b only")
	b.send(t, "peer-c", "b to c")
	a.broadcast(t, "to everyone")
	var tricky []string
	for _, m := range []string{"ping", "pong", "to:peer-c;not for c", "to:all;x", "connect:peer-zz", "disconnect:peer-a", "get:123", "welcome:{}", ""} {
		tricky = append(tricky, m)
		a.send(t, "peer-b", m)
	}
	var seq []string
	for i := range 100 {
		seq = append(seq, fmt.Sprint("seq ", i))
		a.send(t, "peer-b", seq[i])
	}
	fromA := slices.Concat([]string{"for b only", "to everyone"}, tricky, seq)
	b.waitMessages(t, fromA...)
	// Order holds per sender; c sends once b has all of a's.
	c.broadcast(t, "from c")
	b.waitMessages(t, append(fromA, "from c")...)
	waitUntil(t, "peer-c receives 2 messages", func() bool { return len(c.rec.messages()) >= 2 })
	if got := c.rec.messages(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"b to c", "to everyone"}) {
		t.Errorf("peer-c received %q, want b's and a's broadcast", got)
	}
	a.waitMessages(t, "from c")
	b.rec.mu.Lock()
	joins := slices.Clone(b.rec.joins)
	b.rec.mu.Unlock()
	if !slices.Equal(joins, []string{"peer-c"}) {
		t.Errorf("peer-b's joins %q, want only peer-c (payloads must not read as notices)", joins)
	}
	if s := a.Stats(); s.Sent != 2+int64(len(tricky))+100 || s.Received != 1 || s.LargeSent != 5 || s.Dropped != 0 {
		t.Errorf("peer-a's stats %+v", s)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Send(cancelled, "peer-b", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := a.Broadcast(cancelled, make([]byte, 20000)); !errors.Is(err, context.Canceled) {
		t.Errorf("large Broadcast with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := a.Send(t.Context(), "all", []byte("x")); !errors.Is(err, needs.ErrInvalid) {
		t.Errorf("Send to all: %v, want an invalid error", err)
	}
	if err := a.Send(t.Context(), "a;b", []byte("x")); !errors.Is(err, needs.ErrInvalid) {
		t.Errorf("Send to a;b: %v, want an invalid error", err)
	}
}

// TestIPCLarge: messages over the hub's maxPayload go by POST and arrive
// whole, in their place among the small ones; a frame of exactly
// maxPayload stays on the socket.
func TestIPCLarge(t *testing.T) {
	const maxPayload = 1024
	h := startHub(t, ipchub.Options{MaxPayload: maxPayload})
	a, b, c := dialThree(t, h)

	big := strings.Repeat("0123456789abcdef", 100<<10/16) // 100 KiB
	exact := strings.Repeat("x", maxPayload-len("to:peer-b;"))
	a.send(t, "peer-b", "before")
	a.send(t, "peer-b", big)
	a.send(t, "peer-b", exact)
	a.broadcast(t, big+"!")
	a.send(t, "peer-b", "after")

	b.waitMessages(t, "before", big, exact, big+"!", "after")
	c.waitMessages(t, big+"!")
	if s := a.Stats(); s.LargeSent != 2 || s.Sent != 5 {
		t.Errorf("peer-a's stats %+v, want 2 large of 5 sent", s)
	}
	if s := b.Stats(); s.LargeReceived != 2 || s.Received != 5 {
		t.Errorf("peer-b's stats %+v, want 2 large of 5 received", s)
	}
	if got := h.hub.Stats().Oversize; got != 0 {
		t.Errorf("the hub cut %d peers for oversize frames", got)
	}
}

// TestIPCLargeTooLarge: a large message over MaxLarge is dropped and
// counted, and the next one still arrives.
func TestIPCLargeTooLarge(t *testing.T) {
	h := startHub(t, ipchub.Options{MaxPayload: 1024})
	a := dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	ob := fastOptions(t, h.url(), "peer-b")
	ob.MaxLarge = 4096
	b := dialPeer(t, ob)
	a.send(t, "peer-b", strings.Repeat("y", 4097))
	a.send(t, "peer-b", strings.Repeat("z", 4096))
	b.waitMessages(t, strings.Repeat("z", 4096))
	if s := b.Stats(); s.Dropped != 1 {
		t.Errorf("peer-b's stats %+v, want 1 dropped", s)
	}
}

// TestIPCJoinLeave: the callbacks see peers come and go, and their own
// connection.
func TestIPCJoinLeave(t *testing.T) {
	h := startHub(t, ipchub.Options{})
	a := dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	b := dialPeer(t, fastOptions(t, h.url(), "peer-b"))
	other := fastOptions(t, h.url(), "peer-x")
	other.Group = "g2"
	dialPeer(t, other) // another group: a must not hear of it
	a.send(t, "peer-b", "hello")
	b.waitMessages(t, "hello")
	b.Close()
	waitUntil(t, "peer-a sees peer-b leave", func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return len(a.rec.leaves) > 0
	})
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	if !slices.Equal(a.rec.joins, []string{"peer-b"}) || !slices.Equal(a.rec.leaves, []string{"peer-b"}) {
		t.Errorf("peer-a's joins %q and leaves %q, want peer-b each", a.rec.joins, a.rec.leaves)
	}
	if a.rec.connects != 1 || len(a.rec.disconnects) != 0 {
		t.Errorf("peer-a: %d connects, disconnects %v; want 1 and none", a.rec.connects, a.rec.disconnects)
	}
}

// TestIPCReconnect: the hub's server closes and a new one starts on the
// same address; the clients reconnect and keep working.
func TestIPCReconnect(t *testing.T) {
	h := startHub(t, ipchub.Options{})
	a := dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	b := dialPeer(t, fastOptions(t, h.url(), "peer-b"))
	a.send(t, "peer-b", "before")
	b.waitMessages(t, "before")

	down := time.Now()
	h.restart()
	restarted := time.Now()
	waitUntil(t, "both clients reconnect", func() bool {
		return a.Stats().Reconnects == 1 && b.Stats().Reconnects == 1
	})
	t.Logf("reconnected %v after the hub closed, %v after the new one listened (the hub's close took %v)",
		time.Since(down).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond), restarted.Sub(down).Round(time.Millisecond))
	if err := a.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.send(t, "peer-b", "after")
	b.send(t, "peer-a", "back")
	b.waitMessages(t, "before", "after")
	a.waitMessages(t, "back")
	for _, p := range []*ipcPeer{a, b} {
		p.rec.mu.Lock()
		connects, disc := p.rec.connects, slices.Clone(p.rec.disconnects)
		p.rec.mu.Unlock()
		if connects != 2 || len(disc) != 1 || websocket.CloseStatus(disc[0]) != websocket.StatusGoingAway {
			t.Errorf("%s: %d connects, disconnects %v; want 2 and one going away", p.ID(), connects, disc)
		}
	}
}

// TestIPCKeepalive: a client pings its idle hub and, answered, stays
// connected.
func TestIPCKeepalive(t *testing.T) {
	h := startHub(t, ipchub.Options{})
	opts := fastOptions(t, h.url(), "peer-a")
	opts.PingAfter, opts.PongTimeout = 20*time.Millisecond, 200*time.Millisecond
	a := dialPeer(t, opts)
	// The hub counts each pong it queues: ten of them are ten pings.
	waitUntil(t, "the hub answers ten pings", func() bool { return h.hub.Stats().Messages >= 11 })
	if s := a.Stats(); s.Reconnects != 0 {
		t.Errorf("stats %+v: a client whose pings were answered reconnected", s)
	}
}

// silentHub is a fake hub that welcomes its peers and then never answers:
// it records the frames of each connection.
type silentHub struct {
	srv   *httptest.Server
	conns chan *silentConn
}

type silentConn struct {
	frames chan string    // what the client sent
	ended  chan time.Time // when the connection ended
}

func newSilentHub(t *testing.T) *silentHub {
	h := &silentHub{conns: make(chan *silentConn, 16)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		sc := &silentConn{frames: make(chan string, 64), ended: make(chan time.Time, 1)}
		h.conns <- sc
		if err := ws.Write(r.Context(), websocket.MessageText, []byte(`welcome:{"maxPayload":16384}`)); err != nil {
			return
		}
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				sc.ended <- time.Now()
				return
			}
			select {
			case sc.frames <- string(b):
			default:
			}
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *silentHub) next(t *testing.T) *silentConn {
	t.Helper()
	select {
	case sc := <-h.conns:
		return sc
	case <-time.After(timeout):
		t.Fatal("no connection to the silent hub")
		return nil
	}
}

// TestIPCPongTimeout: a hub that never answers ping is dropped after
// PongTimeout, and the client reconnects.
func TestIPCPongTimeout(t *testing.T) {
	h := newSilentHub(t)
	opts := fastOptions(t, "ws://"+h.srv.Listener.Addr().String(), "peer-a")
	const pongTimeout = 300 * time.Millisecond
	opts.PingAfter, opts.PongTimeout = 50*time.Millisecond, pongTimeout
	a := dialPeer(t, opts)
	first := h.next(t)
	var pinged time.Time
	select {
	case f := <-first.frames:
		pinged = time.Now()
		if f != "ping" {
			t.Fatalf("first frame from the client %q, want ping", f)
		}
	case <-time.After(timeout):
		t.Fatal("the client never pinged")
	}
	var ended time.Time
	select {
	case ended = <-first.ended:
	case <-time.After(timeout):
		t.Fatal("the client kept the silent connection")
	}
	if waited := ended.Sub(pinged); waited < pongTimeout*8/10 {
		t.Errorf("the client dropped the connection %v after its ping, before PongTimeout %v", waited, pongTimeout)
	} else {
		t.Logf("dropped %v after the ping (PongTimeout %v)", waited.Round(time.Millisecond), pongTimeout)
	}
	h.next(t) // the reconnection
	waitUntil(t, "the client reconnects", func() bool { return a.Stats().Reconnects >= 1 })
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	if len(a.rec.disconnects) == 0 || !errors.Is(a.rec.disconnects[0], child.ErrNoPong) {
		t.Errorf("disconnects %v, want ErrNoPong first", a.rec.disconnects)
	}
}

// TestIPCSlowCallback: a callback that does not return holds at most
// QueueLen events; the newest beyond them are dropped and counted, and the
// client stays connected and catches up once the callback returns.
func TestIPCSlowCallback(t *testing.T) {
	h := startHub(t, ipchub.Options{})
	a := dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	opts := fastOptions(t, h.url(), "peer-b")
	opts.QueueLen = 4
	opts.OnMessage = func(m []byte) {
		<-release
		mu.Lock()
		got = append(got, string(m))
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	b, err := child.DialIPC(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 50
	for i := range n {
		a.send(t, "peer-b", fmt.Sprint(i))
	}
	// One message in the callback, QueueLen waiting, the rest dropped:
	// at least n-1-QueueLen once the reader has seen them all.
	waitUntil(t, "peer-b drops what does not fit", func() bool { return b.Stats().Dropped >= int64(n-1-opts.QueueLen) })
	close(release)
	// A message sent while the queue is still full is dropped too (the
	// newest go): send until one gets through, then every one of the n
	// has been read.
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		a.send(t, "peer-b", fmt.Sprint("last-", i))
		caught := false
		for wait := time.Now().Add(100 * time.Millisecond); !caught && time.Now().Before(wait); time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			caught = slices.ContainsFunc(got, func(m string) bool { return strings.HasPrefix(m, "last-") })
			mu.Unlock()
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peer-b never caught up")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Which messages are kept depends on when the callback goroutine took
	// the first: QueueLen or QueueLen+1 of them, "0" first, in the order
	// sent; with the dropped ones they make all n.
	var kept []int
	for _, m := range got {
		if v, err := strconv.Atoi(m); err == nil {
			kept = append(kept, v)
		}
	}
	ordered := len(kept) > 0 && kept[0] == 0 && slices.IsSorted(kept) && len(slices.Compact(slices.Clone(kept))) == len(kept)
	if !ordered || len(kept) < opts.QueueLen || len(kept) > opts.QueueLen+1 || int64(len(kept))+b.Stats().Dropped < n {
		t.Errorf("peer-b received %q with %d dropped; want \"0\" and %d or %d more in the order sent, making %d with the dropped",
			got, b.Stats().Dropped, opts.QueueLen-1, opts.QueueLen, n)
	}
	if s := b.Stats(); s.Reconnects != 0 {
		t.Errorf("stats %+v: a slow callback made the client reconnect", s)
	}
}

// TestIPCClose: Close ends every goroutine of the client, is idempotent,
// and makes the methods return ErrIPCClosed.
func TestIPCClose(t *testing.T) {
	h := startHub(t, ipchub.Options{MaxPayload: 1024})
	a := dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	// A large message fetched, and a keepalive running.
	b := dialPeer(t, fastOptions(t, h.url(), "peer-b"))
	a.send(t, "peer-b", strings.Repeat("L", 2000))
	b.waitMessages(t, strings.Repeat("L", 2000))
	if left := leakcheck.Running(); len(ipcOnly(left)) < 6 {
		t.Fatalf("%d goroutines of the clients, want a reader, a keepalive and a deliverer each:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	for range 2 {
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if left := ipcGoroutines(); len(left) > 0 {
		t.Fatalf("goroutines of closed clients:\n%s", strings.Join(left, "\n\n"))
	}
	if err := a.Send(t.Context(), "peer-b", []byte("x")); !errors.Is(err, child.ErrIPCClosed) {
		t.Errorf("Send after Close: %v, want ErrIPCClosed", err)
	}
	if err := a.WaitConnected(t.Context()); !errors.Is(err, child.ErrIPCClosed) {
		t.Errorf("WaitConnected after Close: %v, want ErrIPCClosed", err)
	}
	waitUntil(t, "the hub sees both leave", func() bool { return len(h.hub.Snapshot()) == 0 })
}

// TestIPCCloseWhileReconnecting: Close ends a client that cannot reach its
// hub.
func TestIPCCloseWhileReconnecting(t *testing.T) {
	h := startHub(t, ipchub.Options{})
	a := dialPeer(t, fastOptions(t, h.url(), "peer-a"))
	h.stop()
	waitUntil(t, "the client notices", func() bool {
		return errors.Is(a.Send(t.Context(), "peer-b", []byte("x")), child.ErrIPCDisconnected)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := a.WaitConnected(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitConnected without a hub: %v, want the deadline", err)
	}
	a.Close()
	if left := ipcGoroutines(); len(left) > 0 {
		t.Fatalf("goroutines of a closed client:\n%s", strings.Join(left, "\n\n"))
	}
}

// ipcGoroutines polls briefly for the goroutines of IPC clients to end
// and returns the stacks of those left.
func ipcGoroutines() []string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := ipcOnly(leakcheck.Running())
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ipcOnly returns the stacks of goroutines of IPC clients.
func ipcOnly(stacks []string) []string {
	var out []string
	for _, g := range stacks {
		if strings.Contains(g, "berth/child.(*IPC)") {
			out = append(out, g)
		}
	}
	return out
}

// TestDialIPCErrors: what the hub refuses, and bad options, come back
// from DialIPC with the reason.
func TestDialIPCErrors(t *testing.T) {
	h := startHub(t, ipchub.Options{Token: "right"})
	closedAddr := "ws://" + freeports.Refusing(t)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		opts child.IPCOptions
		want string
	}{
		{"bad token", t.Context(), child.IPCOptions{Addr: h.url(), Group: "g", Token: "wrong"}, "403 Forbidden: Invalid token"},
		{"short id", t.Context(), child.IPCOptions{Addr: h.url(), Group: "g", ID: "abc"}, "IPCOptions.ID"},
		{"no group", t.Context(), child.IPCOptions{Addr: h.url()}, "IPCOptions.Group"},
		{"http address", t.Context(), child.IPCOptions{Addr: "http://" + h.addr, Group: "g"}, "IPCOptions.Addr"},
		{"no hub", t.Context(), child.IPCOptions{Addr: closedAddr, Group: "g", Token: "sekrit"}, "connection refused"},
		{"cancelled", cancelled, child.IPCOptions{Addr: h.url(), Group: "g", Token: "right"}, "context canceled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := child.DialIPC(tt.ctx, tt.opts)
			if err == nil {
				c.Close()
				t.Fatal("DialIPC succeeded")
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("the error shows the token: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DialIPC: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestIPCFromEnv: the options from BERTH_IPC*, and errors naming the
// variable at fault.
func TestIPCFromEnv(t *testing.T) {
	vars := []string{child.EnvIPC, child.EnvIPCHost, child.EnvIPCPort, child.EnvIPCToken, child.EnvIPCGroup, child.EnvNeed}
	tests := []struct {
		name    string
		env     map[string]string
		want    child.IPCOptions
		wantErr string // the variable the error must name
	}{
		{name: "everything", env: map[string]string{"BERTH_IPC": "ws://10.0.0.1:9163", "BERTH_IPC_HOST": "10.0.0.1", "BERTH_IPC_PORT": "9163", "BERTH_IPC_TOKEN": "s3", "BERTH_IPC_GROUP": "db_data", "BERTH_NEED": "web"},
			want: child.IPCOptions{Addr: "ws://10.0.0.1:9163", Token: "s3", Group: "db_data"}},
		{name: "group from the need", env: map[string]string{"BERTH_IPC": "ws://[::1]:9163", "BERTH_NEED": "web"},
			want: child.IPCOptions{Addr: "ws://[::1]:9163", Group: "web"}},
		{name: "host and port only", env: map[string]string{"BERTH_IPC_HOST": "::1", "BERTH_IPC_PORT": "9163", "BERTH_IPC_GROUP": "g"},
			want: child.IPCOptions{Addr: "ws://[::1]:9163", Group: "g"}},
		{name: "wss", env: map[string]string{"BERTH_IPC": "wss://hub.lan", "BERTH_IPC_GROUP": "g"},
			want: child.IPCOptions{Addr: "wss://hub.lan", Group: "g"}},
		{name: "http scheme", env: map[string]string{"BERTH_IPC": "http://h:1", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC"},
		{name: "no scheme", env: map[string]string{"BERTH_IPC": "h:9163", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC"},
		{name: "no host", env: map[string]string{"BERTH_IPC": "ws://:9163", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC"},
		{name: "port 0", env: map[string]string{"BERTH_IPC": "ws://h:0", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC"},
		{name: "port too big", env: map[string]string{"BERTH_IPC": "ws://h:70000", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC"},
		{name: "a path", env: map[string]string{"BERTH_IPC": "ws://h:1/g/connect", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC"},
		{name: "bad BERTH_IPC_PORT", env: map[string]string{"BERTH_IPC": "ws://h:1", "BERTH_IPC_PORT": "x", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC_PORT"},
		{name: "port without host", env: map[string]string{"BERTH_IPC_PORT": "9163", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC_HOST"},
		{name: "host without port", env: map[string]string{"BERTH_IPC_HOST": "h", "BERTH_IPC_GROUP": "g"}, wantErr: "BERTH_IPC_PORT"},
		{name: "no group", env: map[string]string{"BERTH_IPC": "ws://h:1"}, wantErr: "BERTH_IPC_GROUP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range vars {
				t.Setenv(k, tt.env[k])
			}
			got, err := child.IPCFromEnv()
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr+":") || !errors.Is(err, needs.ErrInvalid) {
					t.Fatalf("IPCFromEnv = %+v, %v; want an invalid error naming %s", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr != tt.want.Addr || got.Group != tt.want.Group || got.Token != tt.want.Token {
				t.Errorf("IPCFromEnv = %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("not under berth", func(t *testing.T) {
		for _, k := range vars {
			t.Setenv(k, "")
		}
		if _, err := child.IPCFromEnv(); !errors.Is(err, child.ErrNoIPC) {
			t.Fatalf("IPCFromEnv: %v, want ErrNoIPC", err)
		}
	})
}
