package ipchub_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/ipchub"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 20 * time.Second

// newTestHub serves a hub with opts on a loopback port and returns it with
// its http:// base URL. Cleanup closes both.
func newTestHub(t *testing.T, opts ipchub.Options) (*ipchub.Server, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s := ipchub.NewServer(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return s, ts.URL
}

// client is a peer written from the protocol description.
type client struct {
	id string
	c  *websocket.Conn
}

func connectURL(base, group, id, token string) string {
	q := url.Values{"id": {id}, "v": {"1.0.0"}, "t": {token}}
	return "ws" + strings.TrimPrefix(base, "http") + "/" + group + "/connect?" + q.Encode()
}

// dial connects id to group and checks the welcome frame.
func dial(t *testing.T, base, group, id, token string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, connectURL(base, group, id, token), nil)
	if err != nil {
		t.Fatalf("dial %s/%s: %v", group, id, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	cl := &client{id: id, c: c}
	if got := cl.read(t); !strings.HasPrefix(got, "welcome:") {
		t.Fatalf("%s: first frame %q, want welcome", id, got)
	}
	return cl
}

// read returns the next text frame.
func (cl *client) read(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, b, err := cl.c.Read(ctx)
	if err != nil {
		t.Fatalf("%s: read: %v", cl.id, err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("%s: frame type %v, want text", cl.id, typ)
	}
	return string(b)
}

// expect reads the next frames and fails unless they are want, in order.
func (cl *client) expect(t testing.TB, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := cl.read(t); got != w {
			t.Fatalf("%s: got %q, want %q", cl.id, got, w)
		}
	}
}

// send writes a text frame.
func (cl *client) send(t testing.TB, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cl.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("%s: write: %v", cl.id, err)
	}
}

// barrier sends ping and expects pong as the next frame: whatever the hub
// queued to cl before it handled the ping would come first, so nothing
// was.
func (cl *client) barrier(t testing.TB) {
	t.Helper()
	cl.send(t, "ping")
	cl.expect(t, "pong")
}

// closed reads until the connection ends and returns its close error.
func (cl *client) closed(t testing.TB) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, _, err := cl.c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: read ended with %v, want a close frame", cl.id, err)
		}
		return ce
	}
}

// get does a GET and returns the status and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// post does a POST of body and returns the status and body.
func post(t *testing.T, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// websocketDial dials u without reading the welcome frame.
func websocketDial(t *testing.T, u string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, nil)
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}
