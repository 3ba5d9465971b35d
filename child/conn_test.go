package child_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"berth/child"
	"berth/needs"
	"berth/pipes"
)

const timeout = 10 * time.Second

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// master is a fake berth master listening on a child's pipe.
type master struct {
	t     *testing.T
	path  string
	conns chan *peer // accepted connections

	mu    sync.Mutex // Protects following.
	l     *pipes.Listener
	peers []*peer
	wg    sync.WaitGroup // accept loop and pumps
}

// peer is the master's end of one connection from the child.
type peer struct {
	*pipes.Conn
	msgs chan *pipes.Msg // every frame from the child; closed when it hangs up
	done chan struct{}   // closed by master.stop
}

// newMaster listens on a pipe in a fresh short directory.
func newMaster(t *testing.T) *master {
	t.Helper()
	dir, err := os.MkdirTemp("", "ch")
	if err != nil {
		t.Fatal(err)
	}
	m := &master{t: t, path: filepath.Join(dir, "m.sock"), conns: make(chan *peer, 16)}
	t.Cleanup(func() {
		m.stop()
		os.RemoveAll(dir)
	})
	m.listen()
	return m
}

// listen (re)starts listening on m.path.
func (m *master) listen() {
	m.t.Helper()
	l, err := pipes.Listen(m.path)
	if err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.l = l
	m.wg.Go(func() {
		for {
			pc, err := l.AcceptConn()
			if err != nil {
				return
			}
			p := &peer{Conn: pc, msgs: make(chan *pipes.Msg, 64), done: make(chan struct{})}
			m.mu.Lock()
			m.peers = append(m.peers, p)
			m.mu.Unlock()
			m.wg.Go(p.pump)
			m.conns <- p
		}
	})
}

// stop closes the listener and every connection, as a master that exits.
func (m *master) stop() {
	m.mu.Lock()
	l, peers := m.l, m.peers
	m.l, m.peers = nil, nil
	m.mu.Unlock()
	if l != nil {
		l.Close()
	}
	for _, p := range peers {
		close(p.done)
		p.Close()
	}
	m.wg.Wait()
}

// accept returns the next connection from the child.
func (m *master) accept() *peer {
	m.t.Helper()
	select {
	case p := <-m.conns:
		return p
	case <-time.After(timeout):
		m.t.Fatal("timed out waiting for the child to connect")
		return nil
	}
}

func (p *peer) pump() {
	defer close(p.msgs)
	for {
		m, err := p.Recv()
		if err != nil {
			return
		}
		select {
		case p.msgs <- m:
		case <-p.done:
			return
		}
	}
}

// expect returns the child's next message, which must be of type typ.
// Heartbeats are skipped unless typ is stats.
func (p *peer) expect(t *testing.T, typ string) *pipes.Msg {
	t.Helper()
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				t.Fatalf("child hung up; want %s", typ)
			}
			if m.Type == pipes.TypeStats && typ != pipes.TypeStats {
				continue
			}
			if m.Type != typ {
				t.Fatalf("child sent %+v, want %s", m, typ)
			}
			return m
		case <-time.After(timeout):
			t.Fatalf("timed out waiting for %s", typ)
		}
	}
}

// expectHello checks a child.hello carrying this process's pid.
func (p *peer) expectHello(t *testing.T) {
	t.Helper()
	var h pipes.ChildHello
	if err := p.expect(t, pipes.TypeChildHello).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.PID != os.Getpid() {
		t.Errorf("hello pid %d, want %d", h.PID, os.Getpid())
	}
}

// ping sends a ping and waits for its pong: every earlier message in both
// directions has been handled by then.
func (p *peer) ping(t *testing.T, id uint64) {
	t.Helper()
	if err := p.Send(&pipes.Msg{V: 1, Type: pipes.TypePing, ID: id}); err != nil {
		t.Fatal(err)
	}
	if m := p.expect(t, pipes.TypePong); m.ID != id {
		t.Fatalf("pong id %d, want %d", m.ID, id)
	}
}

// dial connects a child Conn to m and returns it with the master's end,
// past the hello.
func dial(t *testing.T, m *master) (*child.Conn, *peer) {
	t.Helper()
	c, err := child.Dial(t.Context(), m.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := m.accept()
	p.expectHello(t)
	return c, p
}

func TestDialHelloReady(t *testing.T) {
	c, p := dial(t, newMaster(t))
	if err := c.Ready(); err != nil {
		t.Fatal(err)
	}
	if m := p.expect(t, pipes.TypeChildReady); m.Body != nil || m.ID != 0 {
		t.Errorf("ready = %+v, want no body and no id", m)
	}
}

func TestStop(t *testing.T) {
	c, p := dial(t, newMaster(t))
	want := pipes.ChildStop{Reason: "scale down", GraceMS: 1500}
	if err := p.SendBody(pipes.TypeChildStop, 0, want); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-c.Stop():
		if got != want {
			t.Errorf("Stop delivered %+v, want %+v", got, want)
		}
	case <-time.After(timeout):
		t.Fatal("stop request not delivered")
	}
	// A second request is not delivered.
	if err := p.SendBody(pipes.TypeChildStop, 0, pipes.ChildStop{Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	p.ping(t, 1)
	select {
	case s := <-c.Stop():
		t.Errorf("second stop request delivered: %+v", s)
	default:
	}
}

func TestStopWithoutBody(t *testing.T) {
	c, p := dial(t, newMaster(t))
	if err := p.Send(&pipes.Msg{V: 1, Type: pipes.TypeChildStop}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-c.Stop():
		if s != (pipes.ChildStop{}) {
			t.Errorf("got %+v, want a zero ChildStop", s)
		}
	case <-time.After(timeout):
		t.Fatal("stop request not delivered")
	}
}

func TestAnswers(t *testing.T) {
	_, p := dial(t, newMaster(t))
	p.ping(t, 42)
	p.ping(t, 1<<63)

	tests := []struct {
		name string
		msg  *pipes.Msg
		want error
	}{
		{"unknown type", &pipes.Msg{V: 1, Type: "child.reload", ID: 7}, pipes.ErrUnsupported},
		{"bad stop body", &pipes.Msg{V: 1, Type: pipes.TypeChildStop, ID: 8, Body: []byte(`{"grace_ms":"soon"}`)}, needs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Send(tt.msg); err != nil {
				t.Fatal(err)
			}
			m := p.expect(t, pipes.TypeError)
			if m.ID != tt.msg.ID || m.Error == nil || !errors.Is(m.Error, tt.want) {
				t.Errorf("answer %+v (%v), want an error for id %d matching %v", m, m.Error, tt.msg.ID, tt.want)
			}
		})
	}
	// Errors and pongs from the master are not answered.
	p.Send(&pipes.Msg{V: 1, Type: pipes.TypeError, ID: 3, Error: &pipes.Error{Code: pipes.CodeInternal, Message: "m"}})
	p.Send(&pipes.Msg{V: 1, Type: pipes.TypePong, ID: 4})
	p.ping(t, 5)
}

func TestSendStats(t *testing.T) {
	c, p := dial(t, newMaster(t))
	if err := c.SendStats(pipes.Stats{Connections: 2, RSS: 10}); err != nil {
		t.Fatal(err)
	}
	var s pipes.Stats
	if err := p.expect(t, pipes.TypeStats).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.Connections != 2 || s.RSS != 10 || s.SampledAt.IsZero() {
		t.Errorf("stats = %+v", s)
	}
	if err := c.SendStats(pipes.Stats{CPUPercent: -1}); !errors.Is(err, needs.ErrInvalid) {
		t.Errorf("SendStats with negative CPU: %v, want ErrInvalid", err)
	}
}

func TestHeartbeat(t *testing.T) {
	c, p := dial(t, newMaster(t))
	c.StartHeartbeat(t.Context(), 5*time.Millisecond, func() int { return 3 })
	for range 3 {
		var s pipes.Stats
		if err := p.expect(t, pipes.TypeStats).Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s.PID != os.Getpid() || s.RSS == 0 || s.HeapUsed == 0 || s.HeapTotal < s.HeapUsed || s.Connections != 3 || s.CPUPercent < 0 {
			t.Errorf("heartbeat = %+v", s)
		}
	}
}

func TestReconnect(t *testing.T) {
	for _, ready := range []bool{true, false} {
		name := map[bool]string{true: "after ready", false: "before ready"}[ready]
		t.Run(name, func(t *testing.T) {
			m := newMaster(t)
			c, p := dial(t, m)
			if ready {
				if err := c.Ready(); err != nil {
					t.Fatal(err)
				}
				p.expect(t, pipes.TypeChildReady)
			}

			// The master goes away; the child notices.
			m.stop()
			var err error
			waitUntil(t, "SendStats reports ErrDisconnected", func() bool {
				err = c.SendStats(pipes.Stats{})
				return errors.Is(err, child.ErrDisconnected)
			})
			if ready {
				// Saying ready again while down is harmless and not repeated.
				if err := c.Ready(); !errors.Is(err, child.ErrDisconnected) {
					t.Errorf("Ready while down: %v, want ErrDisconnected", err)
				}
			}

			// The master comes back on the same path.
			m.listen()
			p = m.accept()
			p.expectHello(t)
			if ready {
				p.expect(t, pipes.TypeChildReady)
			}
			p.ping(t, 9) // nothing else (no second ready) came before the pong
			if err := c.SendStats(pipes.Stats{}); err != nil {
				t.Errorf("SendStats after reconnecting: %v", err)
			}
			p.expect(t, pipes.TypeStats)
		})
	}
}

// TestReconnectBrokenFrame checks that the child starts a new connection
// after the master sends a frame it cannot read, having answered it.
func TestReconnectBrokenFrame(t *testing.T) {
	m := newMaster(t)
	_, p := dial(t, m)
	if err := p.Send(&pipes.Msg{V: 2, Type: pipes.TypePing, ID: 1}); err != nil {
		t.Fatal(err)
	}
	if e := p.expect(t, pipes.TypeError); !errors.Is(e.Error, pipes.ErrUnsupported) {
		t.Errorf("answer to a v2 frame: %v, want unsupported", e.Error)
	}
	p = m.accept()
	p.expectHello(t)
	p.ping(t, 2)
}

func TestClose(t *testing.T) {
	m := newMaster(t)
	before := runtime.NumGoroutine()
	c, p := dial(t, m)
	c.StartHeartbeat(t.Context(), time.Millisecond, nil)
	c.StartHeartbeat(t.Context(), time.Hour, func() int { return 1 })
	p.expect(t, pipes.TypeStats)

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Ready(); !errors.Is(err, child.ErrClosed) {
		t.Errorf("Ready after Close: %v, want ErrClosed", err)
	}
	if err := c.SendStats(pipes.Stats{}); !errors.Is(err, child.ErrClosed) {
		t.Errorf("SendStats after Close: %v, want ErrClosed", err)
	}
	c.StartHeartbeat(t.Context(), time.Millisecond, nil) // does nothing

	// The master sees the hang-up, and every goroutine is gone: the Conn's
	// and the master's pump for it.
	for range p.msgs {
	}
	waitUntil(t, "goroutines return to their number before Dial", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestCloseWhileReconnecting(t *testing.T) {
	m := newMaster(t)
	before := runtime.NumGoroutine()
	c, _ := dial(t, m)
	c.Ready()
	m.stop()
	waitUntil(t, "the child notices", func() bool {
		return errors.Is(c.SendStats(pipes.Stats{}), child.ErrDisconnected)
	})
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	waitUntil(t, "goroutines return to their number before Dial", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestHeartbeatContext(t *testing.T) {
	m := newMaster(t)
	c, p := dial(t, m)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	c.StartHeartbeat(ctx, time.Millisecond, nil)
	p.expect(t, pipes.TypeStats)
	cancel()
	waitUntil(t, "the heartbeat stops with its ctx", func() bool {
		return runtime.NumGoroutine() <= before
	})
	p.ping(t, 1) // the Conn itself is still up
}

func TestDialErrors(t *testing.T) {
	if _, err := child.Dial(t.Context(), ""); !errors.Is(err, child.ErrNoPipe) {
		t.Errorf("Dial(\"\"): %v, want ErrNoPipe", err)
	}
	dir, err := os.MkdirTemp("", "ch")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if c, err := child.Dial(t.Context(), filepath.Join(dir, "none.sock")); err == nil {
		c.Close()
		t.Error("Dial to a missing socket succeeded")
	}
}

func TestOpen(t *testing.T) {
	clearEnv(t)
	if _, err := child.Open(t.Context()); !errors.Is(err, child.ErrNoPipe) {
		t.Errorf("Open outside berth: %v, want ErrNoPipe", err)
	}

	m := newMaster(t)
	t.Setenv(child.EnvPipe, m.path)
	t.Setenv(needs.HTTP.EnvName(), "nope")
	if _, err := child.Open(t.Context()); !errors.Is(err, needs.ErrInvalid) {
		t.Errorf("Open with a malformed port: %v, want ErrInvalid", err)
	}

	t.Setenv(needs.HTTP.EnvName(), "16000")
	c, err := child.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m.accept().expectHello(t)
}
