package pipes_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

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

// TestBatchOverWebSocket: frames added to a Batch leave in one WebSocket
// message per Flush (a batch past 64 KiB in more), and a peer that reads
// messages as a stream, as pipes.Conn does, gets every frame in order.
func TestBatchOverWebSocket(t *testing.T) {
	prep, err := pipes.Prepare(&pipes.Msg{V: 1, Type: pipes.TypeServices, ID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 40<<10)
	url := newWSServer(t, "", func(c *pipes.Conn) {
		b := c.NewBatch()
		if err := b.Flush(); err != nil { // empty: writes nothing
			t.Errorf("Flush of an empty batch: %v", err)
		}
		for id := uint64(1); id <= 50; id++ {
			if err := b.Add(&pipes.Msg{V: 1, Type: pipes.TypePing, ID: id}); err != nil {
				t.Errorf("Add: %v", err)
			}
		}
		if err := b.AddPrepared(prep); err != nil {
			t.Errorf("AddPrepared: %v", err)
		}
		if err := b.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		// Second batch: three frames of 40 KiB, past the 64 KiB mark.
		for id := uint64(51); id <= 53; id++ {
			m, err := pipes.New(pipes.TypeStop, pipes.Stop{Alloc: "a1b2c3d4e5", Reason: big})
			if err != nil {
				t.Error(err)
				return
			}
			m.ID = id
			if err := b.Add(m); err != nil {
				t.Errorf("Add: %v", err)
			}
		}
		if b.Len() == 0 {
			t.Error("Len: 0 with frames added")
		}
		if err := b.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		c.Recv() // until the client goes
	})
	ws, _, err := websocket.Dial(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1) // as websocket.NetConn, which pipes.Conn reads through
	var stream bytes.Buffer
	var msgs []int
	for len(msgs) < 3 {
		typ, b, err := ws.Read(t.Context())
		if err != nil {
			t.Fatalf("after %d messages: %v", len(msgs), err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("message type %v", typ)
		}
		msgs = append(msgs, len(b))
		stream.Write(b)
	}
	var ids []uint64
	for stream.Len() > 0 {
		m, err := pipes.Decode(&stream, 0)
		if err != nil {
			t.Fatalf("frame after ids %v: %v", ids, err)
		}
		ids = append(ids, m.ID)
	}
	want := make([]uint64, 0, 53)
	for id := uint64(1); id <= 50; id++ {
		want = append(want, id)
	}
	want = append(want, 1000, 51, 52, 53)
	if !slices.Equal(ids, want) {
		t.Errorf("frames %v\nwant %v", ids, want)
	}
	// The first batch is one message; the second is cut after the frame
	// that took it past 64 KiB (two frames of 40 KiB), then the third.
	if len(msgs) != 3 || msgs[0] > 4096 || msgs[1] < 80<<10 || msgs[2] > 41<<10 {
		t.Errorf("message sizes %v, want one small, one of two big frames, one of one", msgs)
	}
}
