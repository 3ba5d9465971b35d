package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/gateway"
)

const timeout = 20 * time.Second

// instance is a service behind the gateway, an HTTP server of the test's
// that records what it is sent.
type instance struct {
	srv          *httptest.Server
	mu           sync.Mutex // Protects following.
	seen         []*http.Request
	disconnected []string
	// streamed counts the bytes the stream route wrote; writing is when
	// its write in progress began (unix ns), 0 between writes.
	streamed atomic.Int64
	writing  atomic.Int64
	gwURL    string // the gateway's management base, for pushes
	token    string
}

func newInstance(t *testing.T) *instance {
	in := &instance{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /on_connect", func(w http.ResponseWriter, r *http.Request) {
		in.record(r)
		if r.Header.Get("X-Deny") != "" {
			http.Error(w, "denied: "+r.Header.Get("X-Deny"), http.StatusForbidden)
			return
		}
	})
	mux.HandleFunc("POST /on_disconnect", func(w http.ResponseWriter, r *http.Request) {
		in.mu.Lock()
		in.disconnected = append(in.disconnected, r.Header.Get("connection-id"))
		in.mu.Unlock()
	})
	echo := func(w http.ResponseWriter, r *http.Request) {
		in.record(r)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Route", r.URL.Path)
		json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body), "content_type": r.Header.Get("Content-Type"),
			"connection_id": r.Header.Get("connection-id"), "message_id": r.Header.Get("message-id"),
			"postback": r.Header.Get("postback-url"), "custom": r.Header.Get("x-custom"),
		})
	}
	mux.HandleFunc("POST /echo", echo)
	mux.HandleFunc("POST /{$}", echo)
	mux.HandleFunc("POST /status", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "teapot", http.StatusTeapot)
	})
	mux.HandleFunc("POST /later", func(w http.ResponseWriter, r *http.Request) {
		// 202 now, the real answer pushed through the postback URL.
		postback, id := r.Header.Get("postback-url"), r.Header.Get("message-id")
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
		go func() {
			req, _ := http.NewRequest(http.MethodPost, postback, strings.NewReader(`{"pushed":"`+id+`"}`))
			req.Header.Set("Authorization", "Bearer "+in.token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	})
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		chunk := []byte(strings.Repeat("x", 32<<10))
		n := 3
		if r.URL.Query().Get("big") != "" {
			n = 2048 // 64 MiB
		}
		defer in.writing.Store(0)
		for range n {
			in.writing.Store(time.Now().UnixNano())
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			in.writing.Store(0)
			in.streamed.Add(int64(len(chunk)))
		}
	})
	mux.HandleFunc("POST /die", func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close() // mid-request: no answer at all
	})
	in.srv = httptest.NewServer(mux)
	t.Cleanup(in.srv.Close)
	return in
}

func (in *instance) record(r *http.Request) {
	in.mu.Lock()
	in.seen = append(in.seen, r.Clone(context.Background()))
	in.mu.Unlock()
}

func (in *instance) addr() string { return strings.TrimPrefix(in.srv.URL, "http://") }

// newGateway serves a gateway in front of in (nil: no instance).
func newGateway(t *testing.T, in *instance, opts gateway.Options) (*gateway.Server, string) {
	t.Helper()
	if opts.Pick == nil {
		opts.Pick = func(need string) (string, error) {
			if in == nil {
				return "", errors.New("none running")
			}
			return in.addr(), nil
		}
	}
	if opts.Token == "" {
		opts.Token = "gw-token"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	gw, err := gateway.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(gw)
	t.Cleanup(func() {
		gw.Close()
		ts.Close()
	})
	if in != nil {
		in.gwURL, in.token = ts.URL, opts.Token
	}
	return gw, ts.URL
}

func dial(t *testing.T, base, need string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	for k, vs := range h {
		if !strings.EqualFold(k, "Sec-WebSocket-Protocol") {
			opts.HTTPHeader[k] = vs
			continue
		}
		for _, v := range vs {
			for s := range strings.SplitSeq(v, ",") {
				opts.Subprotocols = append(opts.Subprotocols, strings.TrimSpace(s))
			}
		}
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/"+need, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", need, err)
	}
	c.SetReadLimit(1 << 24)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// reply is a frame of the gateway's, decoded.
type reply struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       json.RawMessage   `json:"body"`
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func read(t *testing.T, c *websocket.Conn) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return r
}

// closedWith reads until the socket closes and returns its close status.
func closedWith(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("socket ended with %v, want a close frame", err)
		}
		return ce
	}
}

func manage(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reading reads c in the background (so its pings are answered) until
// stop, which closes c and waits for the reader.
func reading(t *testing.T, c *websocket.Conn) func() {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.Close(websocket.StatusNormalClosure, "")
			cancel()
			<-done
		})
	}
}
