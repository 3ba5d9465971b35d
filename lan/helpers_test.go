package lan_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/internal/freeports"
	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		select {
		case <-t.Context().Done():
			t.Fatal("test context done while waiting")
		case <-tick.C:
		}
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// call makes one HTTP request and returns the status and body.
func call(t *testing.T, srv *lan.Server, method, path, token, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+srv.Addr()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// errorMessage decodes an {"error": ...} answer, failing if it is not one.
func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var e map[string]string
	if err := json.Unmarshal(body, &e); err != nil || e["error"] == "" || len(e) != 1 {
		t.Fatalf("answer %q is not {\"error\": ...}", body)
	}
	return e["error"]
}

// needNames lists the needs through GET /v1/needs.
func needNames(t *testing.T, srv *lan.Server, token string) []string {
	t.Helper()
	code, body := call(t, srv, http.MethodGet, "/v1/needs", token, "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/needs = %d %s", code, body)
	}
	var list []*needs.NeedStatus
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /v1/needs: %v: %s", err, body)
	}
	names := []string{}
	for _, n := range list {
		names = append(names, n.Name)
	}
	return names
}

// getNeed reads one need with its instances through the client.
func getNeed(t *testing.T, c *lan.Client, name string) *needs.NeedStatus {
	t.Helper()
	st, err := c.Need(t.Context(), name)
	if err != nil {
		t.Fatalf("Need(%q): %v", name, err)
	}
	return st
}

// instance returns the named instance of st, or nil.
func instance(st *needs.NeedStatus, name string) *needs.Instance {
	for _, in := range st.InstanceList {
		if in.Name == name {
			return in
		}
	}
	return nil
}

func intp(n int) *int { return &n }

// subscribe opens /v1/events and returns the decoded events. It returns only
// once the subscription is live: it declares throw-away needs (0 instances)
// until one of them shows up on the stream.
func subscribe(t *testing.T, srv *lan.Server, c *lan.Client) <-chan lan.Event {
	t.Helper()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if c.Token != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+c.Token)
	}
	ws, _, err := websocket.Dial(t.Context(), "ws://"+srv.Addr()+"/v1/events", opts)
	if err != nil {
		t.Fatalf("dial /v1/events: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	ch := make(chan lan.Event, 4096)
	go func() {
		defer close(ch)
		for {
			_, b, err := ws.Read(t.Context())
			if err != nil {
				return
			}
			var e lan.Event
			if err := json.Unmarshal(b, &e); err != nil {
				t.Errorf("event %q: %v", b, err)
				return
			}
			select {
			case ch <- e:
			case <-t.Context().Done():
				return
			}
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprintf("events-sync-%d", i)
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: name, Command: []string{"true"}, Instances: intp(0)}); err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		synced := false
		timer := time.NewTimer(100 * time.Millisecond)
	wait:
		for {
			select {
			case e, ok := <-ch:
				if !ok {
					t.Fatal("event stream closed while syncing")
				}
				if e.Kind == lan.EventNeedAdded && e.Need == name {
					synced = true
					break wait
				}
			case <-timer.C:
				break wait
			}
		}
		timer.Stop()
		if err := c.RemoveNeed(t.Context(), name); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
		if synced {
			return ch
		}
		if time.Now().After(deadline) {
			t.Fatal("event subscription never became live")
		}
	}
}

// waitEvent reads events until match holds, failing after timeout.
func waitEvent(t *testing.T, ch <-chan lan.Event, timeout time.Duration, what string, match func(lan.Event) bool) lan.Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("event stream closed waiting for %s; seen: %v", what, seen)
			}
			if match(e) {
				return e
			}
			desc := e.Kind + " " + e.Need
			if e.Instance != nil {
				desc += fmt.Sprintf(" %s=%s(%s)", e.Instance.Name, e.Instance.State, e.Instance.Reason)
			}
			seen = append(seen, desc)
		case <-timer.C:
			t.Fatalf("no event %s within %v; seen: %v", what, timeout, seen)
		}
	}
}

// instanceEvent matches an instance event of name in state.
func instanceEvent(name string, state needs.State) func(lan.Event) bool {
	return func(e lan.Event) bool {
		return e.Kind == lan.EventInstance && e.Instance != nil && e.Instance.Name == name && e.Instance.State == state
	}
}

// fakeMaster speaks the master side of /v1/link by hand. Pings from the
// lanmanager are answered by its reader and never queued, unless the master
// is silenced (a partition that leaves the TCP connection up).
type fakeMaster struct {
	t    *testing.T
	id   string
	name string
	conn *pipes.Conn
	msgs chan *pipes.Msg

	silent atomic.Bool   // drop pings unanswered, as a partitioned master would
	pings  atomic.Uint64 // pings received from the lanmanager
	pinged chan struct{} // a ping arrived (buffered, 1)
	sent   atomic.Int64  // when it last sent a frame, unix nanoseconds
}

// connectMaster dials /v1/link and sends hello, without waiting for the answer.
func connectMaster(t *testing.T, srv *lan.Server, token, id, name string) *fakeMaster {
	t.Helper()
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", token)
	if err != nil {
		t.Fatalf("dial /v1/link: %v", err)
	}
	m := newFakeMaster(t, conn, id, name)
	m.send(pipes.TypeHello, &pipes.Hello{ID: id, Name: name, Address: "127.0.0.1", Version: "test"})
	return m
}

// newFakeMaster wraps a dialled link; a goroutine queues what arrives.
func newFakeMaster(t *testing.T, conn *pipes.Conn, id, name string) *fakeMaster {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		conn.Close()
	})
	m := &fakeMaster{t: t, id: id, name: name, conn: conn, msgs: make(chan *pipes.Msg, 4096), pinged: make(chan struct{}, 1)}
	go func() {
		defer close(m.msgs)
		for {
			msg, err := conn.Recv()
			if err != nil {
				return
			}
			if msg.Type == pipes.TypePing {
				if !m.silent.Load() { // answered before anyone hears of the ping
					m.sent.Store(time.Now().UnixNano())
					conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID})
				}
				m.pings.Add(1)
				select {
				case m.pinged <- struct{}{}:
				default:
				}
				continue
			}
			select {
			case m.msgs <- msg:
			case <-done:
				return
			}
		}
	}()
	return m
}

// dialMaster connects a fake master and waits for its welcome.
func dialMaster(t *testing.T, srv *lan.Server, token, id, name string) *fakeMaster {
	t.Helper()
	m := connectMaster(t, srv, token, id, name)
	var w pipes.Welcome
	m.expect(pipes.TypeWelcome, &w)
	if w.HeartbeatMS <= 0 || w.TTLMS <= w.HeartbeatMS {
		m.t.Errorf("welcome heartbeat_ms = %d, ttl_ms = %d; want 0 < heartbeat < ttl", w.HeartbeatMS, w.TTLMS)
	}
	return m
}

func (m *fakeMaster) send(typ string, body any) {
	m.t.Helper()
	m.sent.Store(time.Now().UnixNano())
	if err := m.conn.SendBody(typ, 0, body); err != nil {
		m.t.Fatalf("master %s: send %s: %v", m.name, typ, err)
	}
}

// next returns the next message.
func (m *fakeMaster) next(timeout time.Duration) *pipes.Msg {
	m.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case msg, ok := <-m.msgs:
		if !ok {
			m.t.Fatalf("master %s: link closed", m.name)
		}
		return msg
	case <-timer.C:
		m.t.Fatalf("master %s: no message within %v", m.name, timeout)
	}
	panic("unreachable")
}

// expect requires the next message to be of type typ and decodes its body
// into v (if not nil).
func (m *fakeMaster) expect(typ string, v any) *pipes.Msg {
	m.t.Helper()
	msg := m.next(10 * time.Second)
	if msg.Type != typ {
		m.t.Fatalf("master %s: got %s message (body %s, error %v), want %s", m.name, msg.Type, msg.Body, msg.Error, typ)
	}
	if v != nil {
		if err := msg.Decode(v); err != nil {
			m.t.Fatalf("master %s: decode %s: %v", m.name, typ, err)
		}
	}
	return msg
}

// closed waits until the lanmanager has closed the link.
func (m *fakeMaster) closed(timeout time.Duration) {
	m.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case msg, ok := <-m.msgs:
			if !ok {
				return
			}
			m.t.Errorf("master %s: unexpected %s message on a refused link", m.name, msg.Type)
		case <-timer.C:
			m.t.Fatalf("master %s: link still open after %v", m.name, timeout)
		}
	}
}

// takeOffer expects an offer for instance and bids yes.
func (m *fakeMaster) takeOffer(instance string) pipes.Offer {
	m.t.Helper()
	var o pipes.Offer
	m.expect(pipes.TypeOffer, &o)
	if o.Instance != instance {
		m.t.Fatalf("master %s: offer for %q, want %q", m.name, o.Instance, instance)
	}
	m.send(pipes.TypeBid, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
	return o
}

// listen starts a TCP listener on loopback that accepts and closes
// connections, and returns its port.
func listen(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// deadPort returns a loopback port that nothing listens on: free a moment
// ago, outside the range the kernel hands to :0 listeners, and reserved
// from the other tests.
func deadPort(t *testing.T) int {
	t.Helper()
	return freeports.Port(t)
}

// startedFor reports a child for a grant with one http port.
func startedFor(g pipes.Grant, port int) *pipes.Started {
	return &pipes.Started{
		Alloc: g.Alloc, Instance: g.Instance, PID: os.Getpid(), Address: "127.0.0.1",
		Ports: map[needs.Protocol]int{needs.HTTP: port}, StartedAt: time.Now().UTC(),
	}
}

// services lists placed instances through GET /v1/services.
func services(t *testing.T, c *lan.Client) []*needs.Instance {
	t.Helper()
	out, err := c.Services(t.Context())
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	return out
}

// bigBody is a POST /v1/needs body larger than MaxBody.
func bigBody() string {
	var b bytes.Buffer
	b.WriteString(`{"name":"big","command":["x","`)
	b.WriteString(strings.Repeat("a", lan.MaxBody))
	b.WriteString(`"]}`)
	return b.String()
}

// fakeClock is a settable lan.Config.Clock. Its times derive from a real
// time.Now reading by Add, so they keep the monotonic reading.
type fakeClock struct {
	mu sync.Mutex // Protects following.
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// advanceTo sets the clock to t and waits until witness is pinged, which
// proves that a placer pass has run at t: the placer pings a master quiet
// for a heartbeat, and checks every master's liveness in the same pass,
// under the lock any later API call takes. witness must have been quiet
// (by the fake clock) for at least a heartbeat at t and, unless silenced,
// have nothing else queued.
func advanceTo(t *testing.T, c *fakeClock, to time.Time, witness *fakeMaster) {
	t.Helper()
	select {
	case <-witness.pinged:
	default:
	}
	c.Set(to)
	select {
	case <-witness.pinged:
	case <-time.After(10 * time.Second):
		t.Fatalf("master %s not pinged within 10s of moving the clock to %v", witness.name, to)
	}
	if !witness.silent.Load() {
		// Its pong is on the way; a ping of its own, answered, proves the
		// lanmanager has read it, so it counts as heard at `to`, not at
		// some later setting of the clock.
		witness.send(pipes.TypePing, nil)
		witness.expect(pipes.TypePong, nil)
	}
}

// waitMaster polls /v1/masters until the entry named name satisfies cond.
func waitMaster(t *testing.T, c *lan.Client, name string, cond func(*needs.Master) bool) *needs.Master {
	t.Helper()
	var got *needs.Master
	waitFor(t, 10*time.Second, func() bool {
		ms, err := c.Masters(t.Context())
		if err != nil {
			t.Fatalf("Masters: %v", err)
		}
		for _, m := range ms {
			if m.Name == name && cond(m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}
