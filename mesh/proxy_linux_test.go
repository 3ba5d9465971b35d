package mesh_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"berth/mesh"
)

// TestProxyDialTimeoutTriesNext: a backend that never answers the
// handshake (its accept queue is full, so the kernel drops the SYN) holds
// a connection no longer than DialTimeout; the connection goes to the
// other backend, and the silent one is ejected.
func TestProxyDialTimeoutTriesNext(t *testing.T) {
	silent := blackhole(t)
	b := startBackend(t, "b")
	p := mesh.New(mesh.Config{DialTimeout: 300 * time.Millisecond, EjectBase: time.Hour, EjectMax: time.Hour})
	t.Cleanup(func() { p.Close() })
	if err := p.Update([]mesh.Backend{{ID: "silent", Addr: silent}, b.backend()}); err != nil {
		t.Fatal(err)
	}
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if c := dialVia(t, a.String(), ""); c.id != "b" {
			t.Fatalf("connection %d went to %q, want b", i, c.id)
		}
	}
	for _, st := range p.Backends() {
		if st.ID == "silent" && !st.EjectedUntil.After(time.Now()) {
			t.Errorf("the silent backend is not ejected: %+v", st)
		}
	}
}

// TestProxyBackendByName: a backend whose address is a host name is
// dialled by name and proxied like any other.
func TestProxyBackendByName(t *testing.T) {
	b := startBackend(t, "b")
	_, port, _ := net.SplitHostPort(b.addr())
	p := mesh.New(mesh.Config{})
	t.Cleanup(func() { p.Close() })
	if err := p.Update([]mesh.Backend{{ID: "b", Addr: "localhost:" + port}}); err != nil {
		t.Fatal(err)
	}
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dialVia(t, a.String(), "")
	c.echo(t, "by name")
}

// TestProxyBulkBothWays: 8 MiB each way at once through an echo backend
// whose client reads slower than it writes: every byte arrives, in order
// (the partial writes and the back-pressure of the copy).
func TestProxyBulkBothWays(t *testing.T) {
	b := startBackend(t, "b")
	_, addr := newTestProxy(t, mesh.Config{}, b)
	c := dialVia(t, addr, "")
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, 8<<20)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.Conn.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	buf := make([]byte, 1000) // small reads: the proxy's writes to the client block now and then
	n, err := io.CopyBuffer(h, io.LimitReader(c.r, int64(len(data))), buf)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("read back %d of %d bytes: %v", n, len(data), err)
	}
	want := sha256.Sum256(data)
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatal("the bytes read back differ from those sent")
	}
	if rest, err := io.ReadAll(c.r); err != nil || len(rest) != 0 {
		t.Fatalf("after the echo: %d more bytes, %v; want the end of stream", len(rest), err)
	}
}

// TestProxyClientGoneWhileDialing: a client that leaves while its dial
// is still waiting for a silent backend leaves nothing behind, and Close
// does not wait for the dial's timeout.
func TestProxyClientGoneWhileDialing(t *testing.T) {
	silent := blackhole(t)
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	p := mesh.New(mesh.Config{DialTimeout: time.Hour})
	if err := p.Update([]mesh.Backend{{ID: "silent", Addr: silent}}); err != nil {
		t.Fatal(err)
	}
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		c, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	c, err := net.Dial("tcp", a.String()) // still dialling at Close
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	retryUntil(t, 10*time.Second, "the 6 connections counted on the silent backend", func() bool {
		return p.Backends()[0].Conns >= 6
	})
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a dial of an hour")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the client's connection is open after Close")
	}
	var g, fd int
	retryUntil(t, 5*time.Second, "goroutines and fds back to their count before", func() bool {
		collect()
		g, fd = runtime.NumGoroutine(), openFDs(t)
		return g <= g0 && fd <= fd0
	})
}

// blackhole returns an address on 127.0.0.1 whose accept queue (backlog
// 0) is full already, so the kernel drops every new SYN: a dial there
// waits until its timeout.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "blackhole")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return addr
			}
			t.Fatalf("fill the accept queue of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		if i > 8 {
			t.Fatalf("the accept queue of %s never filled", addr)
		}
	}
}

// TestProxyClientFirstHoldsHandshakeACK: with Config.ClientFirst, the
// proxy's dial holds back the handshake's last ACK, so the backend's
// kernel keeps the connection half-open (SYN_RECV, nothing to accept)
// until the client's first bytes arrive; then the backend accepts it with
// the bytes. Both dials: by address (the loop's connect) and by host name
// (the net package's).
func TestProxyClientFirstHoldsHandshakeACK(t *testing.T) {
	for _, byName := range []bool{false, true} {
		t.Run(fmt.Sprintf("byName=%v", byName), func(t *testing.T) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			addr := ln.Addr().String()
			if byName {
				addr = fmt.Sprintf("localhost:%d", port)
			}
			p := mesh.New(mesh.Config{ClientFirst: true})
			t.Cleanup(func() { p.Close() })
			if err := p.Update([]mesh.Backend{{ID: "b", Addr: addr}}); err != nil {
				t.Fatal(err)
			}
			a, err := p.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", a.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The proxy dials as soon as it accepts; the backend's side
			// of that handshake waits in SYN_RECV for the held ACK.
			deadline := time.Now().Add(10 * time.Second)
			for !halfOpenOn(t, port) {
				if time.Now().After(deadline) {
					t.Fatal("the backend never saw a half-open connection: the handshake's last ACK was not held back")
				}
				runtime.Gosched()
			}
			if _, err := c.Write([]byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping\n" {
				t.Fatalf("the backend read %q, %v; want the client's bytes", buf, err)
			}
			if _, err := s.Write([]byte("pong\n")); err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong\n" {
				t.Fatalf("the client read %q, %v; want the backend's answer", buf, err)
			}
		})
	}
}

// halfOpenOn reports whether /proc/net/tcp lists a connection to local
// port port in SYN_RECV (state 03): its handshake's last ACK has not come.
func halfOpenOn(t *testing.T, port int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range bytes.Split(b, []byte("\n"))[1:] {
		f := bytes.Fields(line)
		if len(f) > 3 && bytes.HasSuffix(f[1], []byte(want)) && string(f[3]) == "03" {
			return true
		}
	}
	return false
}
