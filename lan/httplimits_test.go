package lan_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/lan"
)

// TestIdleKeepAliveClosed: 3,000 clients that make one request and then
// keep the connection open, idle, used to hold it forever. The server
// closes each once it has been idle for IdleTimeout. (A refused request's
// connection is closed at once, so the requests here carry the token.)
func TestIdleKeepAliveClosed(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	const idle = 300 * time.Millisecond
	srv, _ := startServer(t, lan.Config{Token: "secret", IdleTimeout: idle})
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	began := time.Now()
	closed := make(chan error, n)
	for _, c := range conns {
		go func() { closed <- keepAliveThenWait(c, srv.Addr(), 30*time.Second) }()
	}
	for range n {
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("FIGURE idle keep-alive: %d connections, one request each, all closed by the server within %s (IdleTimeout %s, MaxConns default %d)",
		n, time.Since(began).Round(time.Millisecond), idle, 1024)
}

// keepAliveThenWait sends one request with the token on c, reads the 200,
// and then waits, sending nothing, until the server closes c.
func keepAliveThenWait(c net.Conn, host string, within time.Duration) error {
	c.SetDeadline(time.Now().Add(within))
	if _, err := fmt.Fprintf(c, "GET /v1/needs HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer secret\r\n\r\n", host); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		return fmt.Errorf("answer %s (close %v), want a kept-alive 200", resp.Status, resp.Close)
	}
	return waitClosed(br, within)
}

// waitClosed reads until the server closes the connection; a timeout means
// it kept it open.
func waitClosed(r io.Reader, within time.Duration) error {
	_, err := io.Copy(io.Discard, r)
	switch {
	case err == nil, errors.Is(err, net.ErrClosed), isReset(err):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the server kept an idle connection open for %s", within)
	}
	return fmt.Errorf("read: %w", err)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestConnCap: clients that connect and never send a header are closed
// after ReadHeaderTimeout, never more than MaxConns are open at once, and
// a real client queued behind them is served.
func TestConnCap(t *testing.T) {
	const max, idle = 8, 40
	srv, c := startServer(t, lan.Config{Token: "secret", MaxConns: max, ReadHeaderTimeout: 300 * time.Millisecond})
	c.Token = "secret"
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, idle)
	for i := range idle {
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		wg.Go(func() {
			if err := waitClosed(conn, 30*time.Second); err != nil {
				errs <- err
			}
		})
	}
	// Queued behind the idle ones, a real call waits for a free slot.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.Needs(ctx); err != nil {
		t.Fatalf("Needs behind %d idle connections: %v", idle, err)
	}
	served := time.Since(began)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	peak := srv.ConnPeak()
	t.Logf("FIGURE connection cap: %d silent connections, cap %d: all closed within %s (ReadHeaderTimeout 300ms), a real call queued behind them served after %s, at most %d open",
		idle, max, time.Since(began).Round(time.Millisecond), served.Round(time.Millisecond), peak)
	if peak > max {
		t.Errorf("%d connections open at once, want at most %d", peak, max)
	}
	if peak < max {
		t.Errorf("at most %d connections open at once: %d silent ones should have filled the cap of %d", peak, idle, max)
	}
}

// TestHeaderLimit: headers above MaxHeaderBytes (64 KiB by default) are
// answered 431.
func TestHeaderLimit(t *testing.T) {
	srv, _ := newTestServer(t, "")
	for _, size := range []int{100 << 10, 2 << 20} {
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		go func() { // the server stops reading at the limit: write aside
			fmt.Fprintf(conn, "GET /v1/needs HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", srv.Addr(), strings.Repeat("a", size))
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%d-byte header: read answer: %v", size, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%d-byte header: %s, want 431", size, resp.Status)
		}
	}
	// A request with ordinary headers still works.
	if code, body := call(t, srv, http.MethodGet, "/v1/needs", "", ""); code != http.StatusOK {
		t.Errorf("GET /v1/needs = %d %s", code, body)
	}
}

// TestEventsNeedToken: /v1/events without the token is refused before the
// WebSocket upgrade.
func TestEventsNeedToken(t *testing.T) {
	srv, _ := newTestServer(t, "secret")
	for _, auth := range []string{"", "Bearer wrong"} {
		opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
		if auth != "" {
			opts.HTTPHeader.Set("Authorization", auth)
		}
		ws, resp, err := websocket.Dial(t.Context(), "ws://"+srv.Addr()+"/v1/events", opts)
		if err == nil {
			ws.CloseNow()
			t.Fatalf("/v1/events with authorization %q upgraded", auth)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/v1/events with authorization %q: %v (response %v), want 401 before the upgrade", auth, err, resp)
		}
	}
}
