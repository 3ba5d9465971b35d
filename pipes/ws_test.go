package pipes_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"berth/needs"
	"berth/pipes"
)

// newWSServer serves handle on a WebSocket endpoint that wants token (if not
// empty) as a bearer token, and returns its ws:// URL. Cleanup waits for
// every handler, hijacked ones included.
func newWSServer(t *testing.T, token string, handle func(*pipes.Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		c, err := pipes.AcceptWS(w, r)
		if err != nil {
			t.Errorf("AcceptWS: %v", err)
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.Close()
		handle(c)
	}))
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestWebSocketExchange(t *testing.T) {
	// The server greets, then answers each ping with a pong of the same id
	// until the client goes away.
	url := newWSServer(t, "s3cret", func(c *pipes.Conn) {
		if err := c.SendBody(pipes.TypeWelcome, 0, pipes.Welcome{HeartbeatMS: 1500}); err != nil {
			t.Errorf("send welcome: %v", err)
			return
		}
		for {
			m, err := c.Recv()
			if err != nil {
				return
			}
			if err := c.Send(&pipes.Msg{V: 1, Type: pipes.TypePong, ID: m.ID}); err != nil {
				t.Errorf("send pong: %v", err)
				return
			}
		}
	})

	c, err := pipes.DialWS(t.Context(), url, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	m, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var w pipes.Welcome
	if err := m.Decode(&w); err != nil || m.Type != pipes.TypeWelcome || w.HeartbeatMS != 1500 {
		t.Fatalf("welcome = %+v (%+v, %v)", m, w, err)
	}
	for id := uint64(1); id <= 20; id++ {
		if err := c.Send(&pipes.Msg{V: 1, Type: pipes.TypePing, ID: id}); err != nil {
			t.Fatal(err)
		}
		m, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != pipes.TypePong || m.ID != id {
			t.Fatalf("answer to ping %d: %+v", id, m)
		}
	}
	// A large frame spans WebSocket messages without trouble.
	big := strings.Repeat("x", 200<<10)
	if err := c.SendBody(pipes.TypeStop, 99, pipes.Stop{Alloc: "a1b2c3d4e5", Reason: big}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(); err != nil || m.ID != 99 {
		t.Fatalf("answer to big frame: %+v, %v", m, err)
	}
}

func TestDialWSUnauthorized(t *testing.T) {
	url := newWSServer(t, "s3cret", func(c *pipes.Conn) {})
	for _, token := range []string{"", "wrong"} {
		c, err := pipes.DialWS(t.Context(), url, token)
		if !errors.Is(err, needs.ErrUnauthorized) {
			if c != nil {
				c.Close()
			}
			t.Errorf("DialWS with token %q: %v, want needs.ErrUnauthorized", token, err)
		}
	}
}

func TestDialWSNotFound(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	c, err := pipes.DialWS(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http"), "")
	if err == nil {
		c.Close()
		t.Fatal("DialWS to a non-WebSocket endpoint succeeded")
	}
	if errors.Is(err, needs.ErrUnauthorized) {
		t.Errorf("DialWS to a 404: %v, should not match ErrUnauthorized", err)
	}
}
