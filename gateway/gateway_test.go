package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/gateway"
)

// TestConnectLifecycle: on_connect gets the connection id, the postback
// URL and the upgrade request's headers; a status of 400 or more closes the
// socket with 1008 and the status and body; Sec-WebSocket-Protocol is
// echoed; /on_disconnect is posted when the client leaves; an unpublished
// need is 404.
func TestConnectLifecycle(t *testing.T) {
	in := newInstance(t)
	gw, base := newGateway(t, in, gateway.Options{Published: func(need string) bool { return need == "web" }})

	denied, _ := dial(t, base, "web", http.Header{"X-Deny": {"no ticket"}})
	if ce := closedWith(t, denied); ce.Code != websocket.StatusPolicyViolation || ce.Reason != "Policy Violation: 403 denied: no ticket" {
		t.Errorf("denied socket closed with %d %q, want 1008 with the status and body", ce.Code, ce.Reason)
	}

	c, resp := dial(t, base, "web", http.Header{"Sec-WebSocket-Protocol": {"chat.v2, chat.v1"}, "X-Custom": {"yes"}})
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "chat.v2" || c.Subprotocol() != "chat.v2" {
		t.Errorf("subprotocol %q, want chat.v2 echoed", got)
	}
	waitUntil(t, "the socket to be registered", func() bool { return len(gw.Connections()) == 1 })
	conns := gw.Connections()
	if len(conns) != 1 || conns[0].Need != "web" || len(conns[0].ID) != 36 || conns[0].ID[14] != '4' {
		t.Fatalf("connections %+v, want one UUID v4 on web", conns)
	}
	id := conns[0].ID
	in.mu.Lock()
	last := in.seen[len(in.seen)-1]
	in.mu.Unlock()
	if last.URL.Path != "/on_connect" || last.Header.Get("connection-id") != id || last.Header.Get("X-Custom") != "yes" ||
		last.Header.Get("postback-url") != base+"/@connections/"+id {
		t.Errorf("on_connect got %s %v", last.URL.Path, last.Header)
	}

	c.Close(websocket.StatusNormalClosure, "bye")
	waitUntil(t, "on_disconnect", func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		return len(in.disconnected) == 1 && in.disconnected[0] == id
	})
	if code, _ := manage(t, http.MethodGet, base+"/other", "", ""); code != http.StatusNotFound {
		t.Errorf("an unpublished need: %d, want 404", code)
	}
}

// TestMessages is the message table: routes, query and params, headers,
// payloads, raw text, answers, errors, each with its message-id.
func TestMessages(t *testing.T) {
	in := newInstance(t)
	_, base := newGateway(t, in, gateway.Options{})
	c, _ := dial(t, base, "web", nil)
	type echoed struct {
		Path, Query, Body string
		ContentType       string `json:"content_type"`
		ConnectionID      string `json:"connection_id"`
		MessageID         string `json:"message_id"`
		Postback, Custom  string
	}
	for _, tt := range []struct {
		name, msg string
		status    int
		check     func(t *testing.T, r reply, e echoed)
	}{
		{"name, params, query, payload, headers", `{"name":"echo","params":{"id":7},"query":{"q":"a b"},"payload":{"foo":"bar"},"headers":{"Message-ID":"m1","X-Custom":"c"}}`, 200,
			func(t *testing.T, r reply, e echoed) {
				if e.Path != "/echo" || e.Query != "id=7&q=a+b" || e.Body != `{"foo":"bar"}` || e.ContentType != "application/json" ||
					e.MessageID != "m1" || e.Custom != "c" || e.ConnectionID == "" || !strings.HasSuffix(e.Postback, "/@connections/"+e.ConnectionID) {
					t.Errorf("the instance saw %+v", e)
				}
				if r.Headers["message-id"] != "m1" || r.Headers["x-route"] != "/echo" || r.Headers["content-type"] != "application/json" {
					t.Errorf("reply headers %v", r.Headers)
				}
			}},
		{"action instead of name", `{"action":"echo","headers":{"message-id":"m2"}}`, 200,
			func(t *testing.T, r reply, e echoed) {
				if e.Path != "/echo" || r.Headers["message-id"] != "m2" {
					t.Errorf("path %q, reply %v", e.Path, r.Headers)
				}
			}},
		{"text that is not JSON", `hello, not json`, 200,
			func(t *testing.T, r reply, e echoed) {
				if e.Path != "/" || e.Body != "hello, not json" || !strings.HasPrefix(e.ContentType, "text/plain") {
					t.Errorf("the instance saw %+v", e)
				}
			}},
		{"the instance's own status", `{"name":"status","headers":{"message-id":"m3"}}`, 418,
			func(t *testing.T, r reply, e echoed) {
				if r.Headers["message-id"] != "m3" || !strings.Contains(string(r.Body), "teapot") {
					t.Errorf("reply %+v", r)
				}
			}},
		{"a route the instance lacks", `{"name":"nope","headers":{"message-id":"m4"}}`, 404, nil},
		{"malformed: headers not an object", `{"name":"echo","headers":[1]}`, 400, nil},
		{"malformed: name not a string", `{"name":5,"headers":{"message-id":"m5"}}`, 400,
			func(t *testing.T, r reply, e echoed) {
				if r.Headers["message-id"] != "m5" || !strings.Contains(string(r.Body), "name: want a string") {
					t.Errorf("reply %+v", r)
				}
			}},
		{"malformed: a route with a slash", `{"name":"a/b","headers":{"message-id":"m6"}}`, 400, nil},
		{"the instance dies mid-request", `{"name":"die","headers":{"message-id":"m7"}}`, 500,
			func(t *testing.T, r reply, e echoed) {
				if r.Headers["message-id"] != "m7" {
					t.Errorf("reply %+v, want message-id m7 kept", r)
				}
			}},
	} {
		send(t, c, tt.msg)
		r := read(t, c)
		if r.StatusCode != tt.status {
			t.Errorf("%s: status %d (%s), want %d", tt.name, r.StatusCode, r.Body, tt.status)
			continue
		}
		var e echoed
		json.Unmarshal(r.Body, &e)
		if tt.check != nil {
			tt.check(t, r, e)
		}
	}
}

// TestNoInstance: without a running instance a message gets 503 with the
// reason, and a new socket is closed with 1013.
func TestNoInstance(t *testing.T) {
	in := newInstance(t)
	running := true
	_, base := newGateway(t, in, gateway.Options{Pick: func(string) (string, error) {
		if !running {
			return "", errString("web has 0 running of 2")
		}
		return in.addr(), nil
	}})
	c, _ := dial(t, base, "web", nil)
	running = false
	send(t, c, `{"name":"echo","headers":{"message-id":"m1"}}`)
	if r := read(t, c); r.StatusCode != 503 || r.Headers["message-id"] != "m1" || !strings.Contains(string(r.Body), "web has 0 running of 2") {
		t.Errorf("reply %+v, want 503 with the reason", r)
	}
	c2, _ := dial(t, base, "web", nil)
	if ce := closedWith(t, c2); ce.Code != websocket.StatusTryAgainLater || !strings.Contains(ce.Reason, "no running instance") {
		t.Errorf("new socket closed with %d %q, want 1013", ce.Code, ce.Reason)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestAcceptedThenPushed: 202 is passed on as a non-final answer, and what
// the service then POSTs to the postback URL reaches the client.
func TestAcceptedThenPushed(t *testing.T) {
	in := newInstance(t)
	_, base := newGateway(t, in, gateway.Options{})
	c, _ := dial(t, base, "web", nil)
	send(t, c, `{"name":"later","headers":{"message-id":"m9"}}`)
	// The service pushes while its 202 is on its way: either may come first.
	var accepted, pushed bool
	for range 2 {
		_, b, err := c.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var r reply
		var p map[string]string
		switch {
		case json.Unmarshal(b, &r) == nil && r.StatusCode == http.StatusAccepted && r.Headers["message-id"] == "m9" && r.Headers["x-stream"] == "":
			accepted = true
		case json.Unmarshal(b, &p) == nil && p["pushed"] == "m9":
			pushed = true
		default:
			t.Errorf("frame %s: want the 202 or the push", b)
		}
	}
	if !accepted || !pushed {
		t.Errorf("202 %v, push %v: want both", accepted, pushed)
	}
}

// TestManagement: list, push, close; 404 for an id never seen, 410 for
// one gone; 401 without the token.
func TestManagement(t *testing.T) {
	in := newInstance(t)
	gw, base := newGateway(t, in, gateway.Options{})
	c, _ := dial(t, base, "web", nil)
	waitUntil(t, "the socket to be registered", func() bool { return len(gw.Connections()) == 1 })
	id := gw.Connections()[0].ID
	if code, body := manage(t, http.MethodGet, base+"/@connections", "", ""); code != http.StatusUnauthorized {
		t.Errorf("list without the token: %d %s", code, body)
	}
	if code, body := manage(t, http.MethodGet, base+"/@connections", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("list with a wrong token: %d %s", code, body)
	}
	code, body := manage(t, http.MethodGet, base+"/@connections", "gw-token", "")
	var list []gateway.ConnInfo
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].ID != id || list[0].Need != "web" {
		t.Errorf("list: %d %s", code, body)
	}
	if code, _ := manage(t, http.MethodPost, base+"/@connections/"+id, "gw-token", `{"hi":1}`); code != http.StatusNoContent {
		t.Errorf("push: %d", code)
	}
	if _, b, err := c.Read(t.Context()); err != nil || string(b) != `{"hi":1}` {
		t.Errorf("pushed frame %q %v", b, err)
	}
	if code, _ := manage(t, http.MethodPost, base+"/@connections/00000000-0000-4000-8000-000000000000", "gw-token", "x"); code != http.StatusNotFound {
		t.Errorf("push to an id never seen: %d, want 404", code)
	}
	if code, _ := manage(t, http.MethodDelete, base+"/@connections/"+id, "gw-token", ""); code != http.StatusNoContent {
		t.Errorf("delete: %d", code)
	}
	if ce := closedWith(t, c); ce.Code != websocket.StatusNormalClosure {
		t.Errorf("deleted socket closed with %d %q, want 1000", ce.Code, ce.Reason)
	}
	waitUntil(t, "the connection to go", func() bool { return len(gw.Connections()) == 0 })
	if code, _ := manage(t, http.MethodPost, base+"/@connections/"+id, "gw-token", "x"); code != http.StatusGone {
		t.Errorf("push to a gone connection: %d, want 410", code)
	}
}

// TestLimits: a message over MaxMessage closes with 1009, over MaxRate
// with 1008, a binary frame with 1003, a socket beyond MaxConnsPerNeed
// with 1013; a socket that answers no ping is closed with 1001.
func TestLimits(t *testing.T) {
	in := newInstance(t)
	gw, base := newGateway(t, in, gateway.Options{MaxMessage: 1024, MaxRate: 5, MaxConnsPerNeed: 2, PingEvery: 200 * time.Millisecond, PongTimeout: 2 * time.Second})

	big, _ := dial(t, base, "web", nil)
	send(t, big, `{"name":"echo","payload":"`+strings.Repeat("x", 2000)+`"}`)
	if ce := closedWith(t, big); ce.Code != websocket.StatusMessageTooBig {
		t.Errorf("big message: closed with %d %q, want 1009", ce.Code, ce.Reason)
	}
	waitUntil(t, "the big socket to go", func() bool { return len(gw.Connections()) == 0 })

	fast, _ := dial(t, base, "web", nil)
	for range 20 {
		if err := fast.Write(t.Context(), websocket.MessageText, []byte(`{"name":"echo"}`)); err != nil {
			break
		}
	}
	if ce := closedWith(t, fast); ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "rate limit") {
		t.Errorf("fast client: closed with %d %q, want 1008 rate limit", ce.Code, ce.Reason)
	}

	bin, _ := dial(t, base, "web", nil)
	bin.Write(t.Context(), websocket.MessageBinary, []byte{1, 2, 3})
	if ce := closedWith(t, bin); ce.Code != websocket.StatusUnsupportedData {
		t.Errorf("binary frame: closed with %d %q, want 1003", ce.Code, ce.Reason)
	}
	waitUntil(t, "the sockets to go", func() bool { return len(gw.Connections()) == 0 })

	// Two sockets that read (and so answer pings) stay; a third is refused.
	// (The pong timeout is 2 s, not less: under a loaded CI run a reading
	// client may miss a 100 ms one, be dropped, and leave its place.)
	a, _ := dial(t, base, "web", nil)
	b, _ := dial(t, base, "web", nil)
	stopA := reading(t, a)
	defer stopA()
	stopB := reading(t, b)
	defer stopB()
	// A socket counts once on_connect accepted it: the third must come
	// after both are counted, or it may take the place of one of them.
	waitUntil(t, "a and b to be listed", func() bool { return len(gw.Connections()) == 2 })
	third, _ := dial(t, base, "web", nil)
	if ce := closedWith(t, third); ce.Code != websocket.StatusTryAgainLater || !strings.Contains(ce.Reason, "too many connections") {
		t.Errorf("third socket: closed with %d %q, want 1013", ce.Code, ce.Reason)
	}
	if n := len(gw.Connections()); n != 2 {
		t.Errorf("%d connections after pings, want the 2 that answer", n)
	}
	stopA()
	stopB()

	// A client that reads nothing answers no ping: closed with 1001.
	waitUntil(t, "a and b to go", func() bool { return len(gw.Connections()) == 0 })
	silent, _ := dial(t, base, "web", nil)
	// Listed first (on_connect accepted it), then dropped: reading it
	// before then would answer the pings.
	waitUntil(t, "the silent socket to be listed", func() bool { return len(gw.Connections()) == 1 })
	waitUntil(t, "the silent socket to be dropped", func() bool { return len(gw.Connections()) == 0 })
	if ce := closedWith(t, silent); ce.Code != websocket.StatusGoingAway || !strings.Contains(ce.Reason, "no pong") {
		t.Errorf("silent socket closed with %d %q, want 1001 no pong", ce.Code, ce.Reason)
	}
}

// TestStreaming: a chunked answer arrives as frames with one x-stream-id,
// x-stream: chunk, then done; with a client that stops reading, the
// instance is held back (its writes block) long before it has written the
// 64 MiB it would: the gateway buffers a bounded amount.
func TestStreaming(t *testing.T) {
	in := newInstance(t)
	_, base := newGateway(t, in, gateway.Options{})
	c, _ := dial(t, base, "web", nil)
	send(t, c, `{"name":"stream","headers":{"message-id":"s1"}}`)
	sid := ""
	total := 0
	for {
		r := read(t, c)
		if r.Headers["message-id"] != "s1" || r.Headers["x-stream-id"] == "" || (sid != "" && r.Headers["x-stream-id"] != sid) {
			t.Fatalf("frame headers %v", r.Headers)
		}
		sid = r.Headers["x-stream-id"]
		if r.Headers["x-stream"] == "done" {
			break
		}
		if r.Headers["x-stream"] != "chunk" {
			t.Fatalf("x-stream %q", r.Headers["x-stream"])
		}
		var s string
		json.Unmarshal(r.Body, &s)
		total += len(s)
	}
	if total != 3*32<<10 {
		t.Errorf("streamed %d bytes, want %d", total, 3*32<<10)
	}

	slow, _ := dial(t, base, "web", nil)
	send(t, slow, `{"name":"stream","query":{"big":"1"}}`)
	read(t, slow) // one frame, then nothing
	waitUntil(t, "the instance to be held back (a write blocked for 300 ms)", func() bool {
		since := in.writing.Load()
		return since != 0 && time.Since(time.Unix(0, since)) > 300*time.Millisecond
	})
	if n := in.streamed.Load(); n > 32<<20 {
		t.Errorf("the instance wrote %d MiB before it was held back; the gateway should buffer little", n>>20)
	} else {
		t.Logf("the instance was held back after %d KiB of 64 MiB", n>>10)
	}
}

// TestManagementOff: a gateway without a token refuses every management
// call.
func TestManagementOff(t *testing.T) {
	in := newInstance(t)
	gw, err := gateway.NewServer(gateway.Options{Pick: func(string) (string, error) { return in.addr(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	rec := newRecorder()
	req, _ := http.NewRequest(http.MethodGet, "/@connections", nil)
	req.Header.Set("Authorization", "Bearer ")
	gw.ServeHTTP(rec, req)
	if rec.code != http.StatusForbidden {
		t.Errorf("list with no token configured: %d, want 403", rec.code)
	}
	if _, err := gateway.NewServer(gateway.Options{}); err == nil {
		t.Error("NewServer without Pick: no error")
	}
}

// FuzzParseMessage: whatever a client sends, parsing never panics, and a
// message it accepts has a route that is one URL-safe path segment.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{`{"name":"x","params":{"a":1},"query":{"b":"c"},"payload":{"p":[1]},"headers":{"message-id":"m"}}`,
		`{"action":"y"}`, `not json`, `{"name":5}`, `{"headers":{"a":{"b":1}}}`, `{"name":"a/b"}`, ``, `{`, "{\"headers\":{\"x\":\"a\\r\\nb\"}}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := gateway.ParseMessage(b)
		if m == nil {
			t.Fatal("nil message")
		}
		if err != nil {
			return
		}
		if strings.ContainsAny(m.Name, "/?#% \r\n") {
			t.Fatalf("route %q accepted", m.Name)
		}
		for k, v := range m.Headers {
			if k != strings.ToLower(k) || strings.ContainsAny(k+v, "\r\n\x00") {
				t.Fatalf("header %q: %q accepted", k, v)
			}
		}
	})
}

type recorder struct {
	h    http.Header
	code int
}

func newRecorder() *recorder                    { return &recorder{h: http.Header{}, code: 200} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }
