// Package limittest checks, over real connections, that an HTTP server
// applies the limits of package httplimit. Test only.
package limittest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Check attacks the server at addr, whose listener allows max connections
// and reports the most it held at once through peak:
//   - a request with 100 KiB of headers is answered 431;
//   - max clients that connect and never send a header are closed by the
//     server (ReadHeaderTimeout), never more than max are open at once,
//     and a real request queued behind them is answered.
//
// It takes about httplimit.ReadHeaderTimeout.
func Check(t testing.TB, addr string, max int, peak func() int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { // the server stops reading at the limit: write aside
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", addr, strings.Repeat("a", 100<<10))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("100 KiB header: read answer: %v", err)
	}
	resp.Body.Close()
	conn.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: %s, want 431", resp.Status)
	}

	resp, served := fillThenQueue(t, addr, max, 30*time.Second, "silent connection", nil)
	t.Logf("FIGURE connection cap on %s: %d silent connections closed, a request behind them answered %s after %s, at most %d open",
		addr, max, resp.Status, served.Round(time.Millisecond), peak())
	if p := peak(); p != max {
		t.Errorf("at most %d connections open at once, want exactly the cap %d (filled by the silent ones, never passed)", p, max)
	}
}

// fillThenQueue opens max connections to addr, sends send's bytes on
// each (nothing if send is nil), and then a request queued behind them
// (in the kernel's backlog); it checks that the server closes every one
// of the max and answers the request, within within, and returns the
// answer and how long it took from the first connection.
func fillThenQueue(t testing.TB, addr string, max int, within time.Duration, what string, send func(c net.Conn) error) (*http.Response, time.Duration) {
	t.Helper()
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, max)
	for i := range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(within))
		if send != nil {
			if err := send(c); err != nil {
				t.Fatal(err)
			}
		}
		wg.Go(func() {
			if _, err := io.Copy(io.Discard, c); err != nil && !strings.Contains(err.Error(), "reset") {
				errs <- fmt.Errorf("a %s was not closed by the server: %w", what, err)
			}
		})
	}
	real, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	real.SetDeadline(time.Now().Add(within))
	if _, err := fmt.Fprintf(real, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(real), nil)
	if err != nil {
		t.Fatalf("a request behind %d of %s: %v", max, what, err)
	}
	resp.Body.Close()
	served := time.Since(began)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return resp, served
}

// CheckSlowBodies attacks the server at addr, whose listener allows max
// connections, with max clients that send a POST's headers announcing a
// body and then nothing: the server must close them (its body timeout),
// and a request queued behind them must be answered. It takes about the
// server's body timeout; it fails after 60 s.
func CheckSlowBodies(t testing.TB, addr string, max int, peak func() int) {
	t.Helper()
	resp, served := fillThenQueue(t, addr, max, 60*time.Second, "connection whose body never came", func(c net.Conn) error {
		_, err := fmt.Fprintf(c, "POST /v1/needs HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", addr)
		return err
	})
	t.Logf("FIGURE slow bodies on %s: %d connections that announced a body and sent 1 byte of it closed, a request behind them answered %s after %s",
		addr, max, resp.Status, served.Round(time.Millisecond))
	if p := peak(); p > max {
		t.Errorf("%d connections open at once, want at most %d", p, max)
	}
}
