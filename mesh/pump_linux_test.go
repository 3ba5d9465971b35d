package mesh

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echoServer accepts on a loopback port and echoes every connection until
// the test ends.
func echoServer(t *testing.T) string {
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
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// onLoop runs f on pm's loop and waits for it.
func onLoop(pm *pump, f func()) {
	done := make(chan struct{})
	pm.post(func() { f(); close(done) })
	<-done
}

// clientSockets reports, from pm's loop, how many connections it holds
// and the TCP_NODELAY of each one's client socket (-1: unreadable).
func clientSockets(pm *pump) (links int, nodelay []int) {
	onLoop(pm, func() {
		links = pm.links
		for _, e := range pm.ends {
			if e == &e.l.ends[0] {
				v, err := unix.GetsockoptInt(e.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
				if err != nil {
					v = -1
				}
				nodelay = append(nodelay, v)
			}
		}
	})
	return links, nodelay
}

// TestPumpSpreadsConnections: with a loop per P, connections accepted on
// one listener are handed to the loop holding the fewest, so 12
// long-lived connections over 4 loops are 3 on each; every one is proxied
// both ways, and its client socket has TCP_NODELAY, which it inherits
// from the listener instead of getting it by a call of its own.
func TestPumpSpreadsConnections(t *testing.T) {
	pumps.mu.Lock()
	users := pumps.users
	pumps.mu.Unlock()
	if users != 0 {
		t.Fatalf("%d proxies still use the loops; this test starts its own", users)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))

	p := New(Config{})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "echo", Addr: echoServer(t)}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := range 12 {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line := fmt.Sprintf("connection %d\n", i)
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("connection %d echoed %q, %v; want %q", i, got, err, line)
		}
		conns = append(conns, c)
	}

	pumps.mu.Lock()
	loops := pumps.loops
	pumps.mu.Unlock()
	if len(loops) != 4 {
		t.Fatalf("%d loops with GOMAXPROCS 4, want 4", len(loops))
	}
	for i, pm := range loops {
		links, nodelay := clientSockets(pm)
		if links != 3 || pm.load.Load() != 3 {
			t.Errorf("loop %d holds %d connections (load %d), want 3", i, links, pm.load.Load())
		}
		for _, v := range nodelay {
			if v != 1 {
				t.Errorf("loop %d: a client socket has TCP_NODELAY %d, want 1", i, v)
			}
		}
	}

	for _, c := range conns {
		c.Close()
	}
	for i, pm := range loops {
		deadline := time.Now().Add(10 * time.Second)
		for pm.load.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("loop %d still counts %d connections 10 s after their clients closed", i, pm.load.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestPumpServerFirstAndQuickClose: a backend that greets and closes at
// once, before the client has sent anything, is a connection that
// succeeded: the client reads the greeting and then the end of stream,
// and the backend is neither ejected nor counted as refused.
func TestPumpServerFirstAndQuickClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "bye\n")
			c.Close()
		}
	}()
	p := New(Config{EjectBase: time.Hour, EjectMax: time.Hour})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "quick", Addr: ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "bye\n" {
			t.Fatalf("connection %d read %q, %v; want the greeting and the end of stream", i, got, err)
		}
	}
	for _, st := range p.Backends() {
		if st.EjectedUntil.After(time.Now()) {
			t.Errorf("the backend that closed at once was ejected: %+v", st)
		}
	}
}

// TestPumpNodelayForeignListener: a listener that Listen did not open
// (served with Serve) has no TCP_NODELAY to pass on, so the loop sets it
// on each socket it accepts.
func TestPumpNodelayForeignListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "echo", Addr: echoServer(t)}}); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { p.Serve(ln); close(served) }()
	defer func() { p.Close(); <-served }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hi\n")
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "hi\n" {
		t.Fatalf("echoed %q, %v", got, err)
	}
	pumps.mu.Lock()
	loops := pumps.loops
	pumps.mu.Unlock()
	seen := 0
	for _, pm := range loops {
		_, nodelay := clientSockets(pm)
		for _, v := range nodelay {
			seen++
			if v != 1 {
				t.Errorf("the accepted socket has TCP_NODELAY %d, want 1", v)
			}
		}
	}
	if seen != 1 {
		t.Errorf("%d client sockets on the loops, want 1", seen)
	}
}

// TestPumpClientFirstQuickACKAfterSend: a backend socket dialled with
// Config.ClientFirst (TCP_QUICKACK off, so the handshake's last ACK waits
// for the request) is back to quick ACKs once the request has gone, so it
// does not hold its ACK of the backend's first answer (up to 40 ms, which
// a backend writing its answer in two pieces with Nagle on would wait
// for). Both kinds of dial: by address and by host name.
func TestPumpClientFirstQuickACKAfterSend(t *testing.T) {
	_, port, _ := net.SplitHostPort(echoServer(t))
	for _, backend := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		t.Run(backend, func(t *testing.T) {
			p := New(Config{ClientFirst: true})
			defer p.Close()
			if err := p.Update([]Backend{{ID: "echo", Addr: backend}}); err != nil {
				t.Fatal(err)
			}
			addr, err := p.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				t.Fatal(err)
			}
			if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "ping\n" {
				t.Fatalf("echo: %q, %v", got, err)
			}
			pumps.mu.Lock()
			loops := pumps.loops
			pumps.mu.Unlock()
			var quick []int
			for _, pm := range loops {
				onLoop(pm, func() {
					for _, e := range pm.ends {
						if e == &e.l.ends[1] {
							v, err := unix.GetsockoptInt(e.fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK)
							if err != nil || e.holdACK {
								v = -1
							}
							quick = append(quick, v)
						}
					}
				})
			}
			if len(quick) != 1 || quick[0] != 1 {
				t.Fatalf("TCP_QUICKACK of the backend sockets after the request: %v, want [1]", quick)
			}
		})
	}
}
