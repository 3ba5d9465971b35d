package mesh_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/mesh"
)

// testBackend is a TCP server on 127.0.0.1 that writes its id and a
// newline to each connection, then echoes until the client half-closes.
type testBackend struct {
	id       string
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

func startBackend(t testing.TB, id string) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{id: id, ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.kill)
	return b
}

func (b *testBackend) addr() string { return b.ln.Addr().String() }

func (b *testBackend) backend() mesh.Backend { return mesh.Backend{ID: b.id, Addr: b.addr()} }

func (b *testBackend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			if _, err := io.WriteString(c, b.id+"\n"); err != nil {
				return
			}
			io.Copy(c, c)
		}()
	}
}

// kill closes the listener and every connection, as a dying process
// would, and waits for the backend's goroutines.
func (b *testBackend) kill() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// refusingAddr returns an address on 127.0.0.1 where nothing listens
// while the test runs.
func refusingAddr(t testing.TB) string {
	t.Helper()
	return freeports.Refusing(t)
}

// newTestProxy starts a proxy on 127.0.0.1 over bs; Cleanup closes it.
func newTestProxy(t testing.TB, cfg mesh.Config, bs ...*testBackend) (*mesh.Proxy, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if tt, ok := t.(*testing.T); ok && testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(tt.Output(), nil))
		}
	}
	p := mesh.New(cfg)
	t.Cleanup(func() { p.Close() })
	var set []mesh.Backend
	for _, b := range bs {
		set = append(set, b.backend())
	}
	if err := p.Update(set); err != nil {
		t.Fatal(err)
	}
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return p, a.String()
}

// client is a connection through the proxy, with the id of the backend
// that took it.
type client struct {
	net.Conn
	r  *bufio.Reader
	id string
}

// dialVia connects to addr (from local, when not empty) and reads the
// backend's id.
func dialVia(t testing.TB, addr, local string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	id, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read the backend id through %s: %v", addr, err)
	}
	return &client{Conn: c, r: r, id: strings.TrimSpace(id)}
}

// echo sends a line and checks that it comes back.
func (c *client) echo(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write to %s: %v", c.id, err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo from %s: %q, %v; want %q", c.id, got, err, line)
	}
}

// waitClosed waits up to timeout for the connection to end (EOF or
// error).
func (c *client) waitClosed(t testing.TB, timeout time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.r.ReadByte()
	if err == nil {
		t.Fatalf("connection to %s: read a byte, want its end", c.id)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection to %s still open after %s", c.id, timeout)
	}
}

// askIDs makes n connections one after another and returns the backend
// id of each.
func askIDs(t testing.TB, addr string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		c := dialVia(t, addr, "")
		ids[i] = c.id
		c.Close()
	}
	return ids
}

func count(ids []string) map[string]int {
	m := map[string]int{}
	for _, id := range ids {
		m[id]++
	}
	return m
}

// retryUntil polls fn every 5 ms until it returns true, or fails after
// timeout.
func retryUntil(t testing.TB, timeout time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(p *mesh.Proxy, id string) (mesh.BackendStatus, bool) {
	for _, s := range p.Backends() {
		if s.ID == id {
			return s, true
		}
	}
	return mesh.BackendStatus{}, false
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("count fds: %v", err)
	}
	return len(ents)
}
