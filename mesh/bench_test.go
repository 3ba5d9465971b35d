package mesh_test

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"

	"berth/mesh"
)

// The benchmarks compare a direct connection to a backend, the same
// through mesh.Proxy, and through a naive proxy that copies in user space
// (io.Copy with its 32 KiB buffer, splice hidden), all over loopback.
//
//	go test -run '^$' -bench . -benchtime 2s ./mesh

// sink accepts connections, reads each to its end, then closes it.
func sink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				io.Copy(io.Discard, c)
				c.Close()
			})
		}
	})
	return ln.Addr().String()
}

// naiveProxy forwards every connection on a new listener to backend, with
// two goroutines and a user-space copy each.
func naiveProxy(b *testing.B, backend string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				up, err := net.Dial("tcp", backend)
				if err != nil {
					c.Close()
					return
				}
				half := func(dst, src net.Conn) {
					io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
					dst.(*net.TCPConn).CloseWrite()
				}
				var both sync.WaitGroup
				both.Go(func() { half(up, c) })
				half(c, up)
				both.Wait()
				c.Close()
				up.Close()
			})
		}
	})
	return ln.Addr().String()
}

type target struct {
	name string
	addr func(b *testing.B, backend string) string
}

var targets = []target{
	{"direct", func(_ *testing.B, backend string) string { return backend }},
	{"mesh", func(b *testing.B, backend string) string {
		p := mesh.New(mesh.Config{})
		b.Cleanup(func() { p.Close() })
		if err := p.Update([]mesh.Backend{{ID: "a", Addr: backend}}); err != nil {
			b.Fatal(err)
		}
		a, err := p.Listen("127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		return a.String()
	}},
	{"naive", naiveProxy},
}

// BenchmarkThroughput streams 64 KiB writes one way on one connection.
func BenchmarkThroughput(b *testing.B) {
	backend := sink(b)
	chunk := make([]byte, 64<<10)
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tg.addr(b, backend))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c) // the sink has read everything
		})
	}
}

// BenchmarkRoundTrip sends 64 bytes and waits for their echo, on one
// connection.
func BenchmarkRoundTrip(b *testing.B) {
	echo := startBackend(b, "a")
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tg.addr(b, echo.addr()))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnect opens a connection, reads the backend's first line and
// closes it: one request per connection.
func BenchmarkConnect(b *testing.B) {
	echo := startBackend(b, "a")
	buf := make([]byte, 2)
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			addr := tg.addr(b, echo.addr())
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up
				c.Close()
			}
		})
	}
}
