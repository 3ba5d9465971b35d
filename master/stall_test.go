package master_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// gate is a TCP proxy between a master and a lanmanager whose direction
// master → lanmanager can be paused: paused, it stops reading from the
// master, whose writes then fill the TCP buffers and block, and it forwards
// nothing it read after the pause. cut closes both sides of every
// connection it proxies.
type gate struct {
	ln     net.Listener
	target string

	mu     sync.Mutex // Protects following.
	cond   *sync.Cond
	paused bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	g.cond = sync.NewCond(&g.mu)
	g.wg.Go(g.accept)
	t.Cleanup(func() {
		ln.Close()
		g.cut()
		g.wg.Wait()
	})
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

func (g *gate) accept() {
	for {
		mc, err := g.ln.Accept()
		if err != nil {
			return
		}
		lc, err := net.Dial("tcp", g.target)
		if err != nil {
			mc.Close()
			continue
		}
		g.mu.Lock()
		g.conns = append(g.conns, mc, lc)
		g.mu.Unlock()
		g.wg.Go(func() { io.Copy(mc, lc); mc.Close() })
		g.wg.Go(func() { g.forward(lc, mc); lc.Close() })
	}
}

// forward copies the master's bytes to the lanmanager while not paused.
func (g *gate) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		g.mu.Lock()
		for g.paused {
			g.cond.Wait()
		}
		g.mu.Unlock()
		n, err := src.Read(buf)
		g.mu.Lock()
		for g.paused { // read after the pause: held until the cut
			g.cond.Wait()
		}
		g.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *gate) pause() {
	g.mu.Lock()
	g.paused = true
	g.mu.Unlock()
}

// cut closes every proxied connection, dropping what was held, and lets
// new ones through.
func (g *gate) cut() {
	g.mu.Lock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
	g.paused = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// blockedWriting reports whether a goroutine whose stack holds fn waits in
// a network write for the socket to drain (this process's master).
func blockedWriting(fn string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "[IO wait") && strings.Contains(g, fn) && strings.Contains(g, "(*FD).Write") {
			return true
		}
	}
	return false
}

// within runs fn and fails the test if it does not return within d: a
// master whose lock is held across a blocked network write would hang it.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s: the master is blocked", what, d)
	}
}

// TestLinkStalledPeer: a lanmanager that stops reading fills the link's
// TCP buffers, so the master's writes block. The master still handles its
// local work: a child is granted, spawned, says ready, is stopped and its
// exit handled, and the children can be listed throughout. When the link
// is cut and comes back, the queued exit arrives exactly once: in the next
// hello, and neither on the stalled link nor again on the new one.
func TestLinkStalledPeer(t *testing.T) {
	f := newFakeLan(t)
	g := newGate(t, f.addr)
	cfg := testConfig(t, g.addr())
	a := openAgent(t, cfg)
	l := f.next(t, 10*time.Second)
	// A long TTL: the link must not be dropped for silence or for a write
	// blocked that long while the test runs.
	if err := l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 20_000, TTLMS: 60_000}); err != nil {
		t.Fatal(err)
	}
	old := l.recvAll(true)

	// Stall: the master streams a 256 MiB log (sparse: no disk used) to a
	// peer that reads nothing more; its writes block once the buffers fill.
	big := filepath.Join(cfg.RuntimeDirectory, "logs", "big.0.log")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 256<<20); err != nil {
		t.Fatal(err)
	}
	g.pause()
	if err := l.conn.SendBody(pipes.TypeLogs, 7, &pipes.Logs{Instance: "big.0"}); err != nil {
		t.Fatal(err)
	}
	// Once the stream's write waits for the full socket it holds the
	// connection's write lock for good: no other frame can be written.
	waitFor(t, 30*time.Second, "the log stream to block on the full link", func() bool {
		return blockedWriting("master.streamLog")
	})

	exe, _ := os.Executable()
	const alloc = "alloc-stall-0001"
	need := needs.Need{Name: "svc", Command: []string{exe}, Instances: 1}
	if err := l.conn.SendBody(pipes.TypeGrant, 0, &pipes.Grant{Instance: "svc.0", Alloc: alloc, Need: need}); err != nil {
		t.Fatal(err)
	}
	var kids []pipes.ChildInfo
	waitFor(t, 20*time.Second, "the child to say ready", func() bool {
		within(t, 5*time.Second, "Children", func() { kids = a.Children() })
		return len(kids) == 1 && kids[0].Ready
	})
	pid := kids[0].PID
	if err := l.conn.SendBody(pipes.TypeStop, 0, &pipes.Stop{Alloc: alloc, Reason: "test", GraceMS: 2000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the child's exit to be handled", func() bool {
		within(t, 5*time.Second, "Children", func() { kids = a.Children() })
		return len(kids) == 0 && !alive(pid)
	})
	within(t, 5*time.Second, "Linked", func() {
		if !a.Linked() {
			t.Error("the link was dropped while stalled")
		}
	})

	// Cut the stalled link: nothing the master wrote after the pause
	// reaches the lanmanager. The master dials again.
	g.cut()
	for msg := range old {
		if msg.Type == pipes.TypeStarted || msg.Type == pipes.TypeReady || msg.Type == pipes.TypeExited {
			t.Errorf("the stalled link delivered %s %s", msg.Type, msg.Body)
		}
	}
	again := f.next(t, 20*time.Second)
	exits := 0
	for _, e := range again.hello.Exits {
		if e.Alloc == alloc {
			exits++
			if !e.Requested || e.Instance != "svc.0" {
				t.Errorf("exit %+v, want svc.0 stopped on request", e)
			}
		}
	}
	if exits != 1 {
		t.Errorf("the hello carries %d exits of %s, want 1: %+v", exits, alloc, again.hello.Exits)
	}
	if len(again.hello.Allocs) != 0 {
		t.Errorf("the hello lists %+v, want no child", again.hello.Allocs)
	}
	// Nothing more about it on the new link: a ping's pong comes after
	// every frame queued before it.
	again.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 20_000, TTLMS: 60_000})
	frames := again.recvAll(false)
	if err := again.conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: 99}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for synced := false; !synced; {
		select {
		case msg, ok := <-frames:
			if !ok {
				t.Fatal("the new link closed")
			}
			switch {
			case msg.Type == pipes.TypePong && msg.ID == 99:
				synced = true
			case msg.Type == pipes.TypeExited:
				t.Errorf("exit sent again on the new link: %s", msg.Body)
			}
		case <-deadline:
			t.Fatal("no pong on the new link")
		}
	}
}
