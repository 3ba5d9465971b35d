package mesh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
// proxy's dial holds back the handshake's last ACK, which then leaves with
// the client's first bytes: the backend's socket has received one segment
// without data (the SYN) where a plain dial sends two (the SYN and the
// ACK). Both dials: by address (the loop's connect) and by host name (the
// net package's). The held ACK leaves on its own after 200 ms, so on a
// machine so loaded that the proxy took that long between the handshake
// and its first write, an attempt shows two; up to five are made.
func TestProxyClientFirstHoldsHandshakeACK(t *testing.T) {
	for _, byName := range []bool{false, true} {
		t.Run(fmt.Sprintf("byName=%v", byName), func(t *testing.T) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			addr := ln.Addr().String()
			if byName {
				addr = fmt.Sprintf("localhost:%d", ln.Addr().(*net.TCPAddr).Port)
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
			for attempt := range 5 {
				control := exchangeOnce(t, a.String(), ln)
				if control == 1 {
					return
				}
				t.Logf("attempt %d: the backend's socket got %d segments without data", attempt, control)
			}
			t.Fatal("the handshake's last ACK was never held back until the client's bytes")
		})
	}
}

// exchangeOnce connects through the proxy at addr, writes at once, and
// checks that the backend (accepting on ln) gets the bytes and that its
// answer comes back; it returns how many segments without data the
// backend's socket had received when the bytes came.
func exchangeOnce(t *testing.T, addr string, ln net.Listener) uint32 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
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
	rc, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		t.Fatal(err, ierr)
	}
	if _, err := s.Write([]byte("pong\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong\n" {
		t.Fatalf("the client read %q, %v; want the backend's answer", buf, err)
	}
	return info.Segs_in - info.Data_segs_in
}

// TestProxyClientFirstSilentClients: clients that connect to a
// ClientFirst proxy and never write (a flood of idle connections) hold
// their backend handshakes half-open only until the held ACK leaves on
// its own: the backend accepts every one of them in the end, the backend
// is not ejected, and a client that writes is served meanwhile.
func TestProxyClientFirstSilentClients(t *testing.T) {
	const silent = 300
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	done := make(chan struct{})
	defer func() { ln.Close(); <-done }()
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns = append(conns, c)
			go io.Copy(c, c) // ends when the deferred Close runs
		}
	}()
	var ejected atomic.Int64
	p := mesh.New(mesh.Config{ClientFirst: true, Logger: slog.New(countEjections{&ejected})})
	t.Cleanup(func() { p.Close() })
	if err := p.Update([]mesh.Backend{{ID: "b", Addr: ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	a, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for range silent {
		c, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	c, err := net.Dial("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 5)
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("a writing client among %d silent ones read %q, %v", silent, buf, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for accepted.Load() < silent+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the backend accepted %d connections, want all %d: silent clients' handshakes stayed half-open", accepted.Load(), silent+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := ejected.Load(); n > 0 {
		t.Errorf("the backend was ejected %d times", n)
	}
}

// countEjections is a log handler that counts the proxy's ejections.
type countEjections struct{ n *atomic.Int64 }

func (h countEjections) Enabled(context.Context, slog.Level) bool { return true }
func (h countEjections) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "mesh: backend ejected" {
		h.n.Add(1)
	}
	return nil
}
func (h countEjections) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countEjections) WithGroup(string) slog.Handler      { return h }
