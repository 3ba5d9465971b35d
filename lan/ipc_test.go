package lan_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"berth/lan"
)

// TestIPCHubGuards: what a web page can send the hub is refused: another
// site's Host (DNS rebinding) gets 421, another origin 403, on the
// WebSocket and on the large-message paths alike, even with the token; a
// client that sends neither (AceBase in Node) is admitted. A bad token is
// refused before anything listens.
func TestIPCHubGuards(t *testing.T) {
	hub, err := lan.OpenIPC(t.Context(), lan.IPCConfig{Listen: "127.0.0.1:0", Token: "tok", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	base := "http://" + hub.Addr()
	connect := "/db/connect?" + url.Values{"id": {"abcde"}, "v": {"1.0.0"}, "t": {"tok"}}.Encode()
	for _, tt := range []struct {
		name, method, path, host, origin string
		code                             int
	}{
		{"rebound host", "GET", connect, "evil.example", "", http.StatusMisdirectedRequest},
		{"cross-origin upgrade", "GET", connect, "", "http://evil.example", http.StatusForbidden},
		{"cross-origin send", "POST", "/db/send?id=abcde&t=tok", "", "http://evil.example", http.StatusForbidden},
		{"rebound receive", "GET", "/db/receive?id=abcde&msg=x&t=tok", "evil.example:80", "", http.StatusMisdirectedRequest},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, strings.NewReader("to:all;x"))
		req.Header.Set("Content-Type", "text/plain")
		if tt.host != "" {
			req.Host = tt.host
		}
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, b, tt.code)
		}
	}
	c, _, err := websocket.Dial(t.Context(), "ws://"+hub.Addr()+connect, nil)
	if err != nil {
		t.Fatalf("a client without Origin: %v", err)
	}
	c.CloseNow()

	if _, err := lan.OpenIPC(t.Context(), lan.IPCConfig{Listen: "127.0.0.1:0", Token: "a b"}); err == nil || !strings.Contains(err.Error(), "ipc token") {
		t.Errorf("token with a space: %v, want an error naming the ipc token", err)
	}
}

// TestIPCOff: a lanmanager without a hub says so on GET /v1/ipc.
func TestIPCOff(t *testing.T) {
	srv, _ := startServer(t, lan.Config{})
	code, body := call(t, srv, "GET", "/v1/ipc", "", "")
	if code != http.StatusNotFound || !strings.Contains(errorMessage(t, body), "--ipc-listen off") {
		t.Errorf("GET /v1/ipc without a hub: %d %s", code, body)
	}
}

// TestIPCHubOutlivesServer: the hub's peers stay connected while the
// lanmanager's other parts close and open again on the same data; the new
// server reports them.
func TestIPCHubOutlivesServer(t *testing.T) {
	hub, err := lan.OpenIPC(t.Context(), lan.IPCConfig{Listen: "127.0.0.1:0", Token: "tok", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	dir := t.TempDir()
	first, _ := startServer(t, lan.Config{DataDir: dir, IPC: hub})
	c, _, err := websocket.Dial(t.Context(), "ws://"+hub.Addr()+"/db/connect?id=stays&v=1.0.0&t=tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, b, err := c.Read(t.Context()); err != nil || !strings.HasPrefix(string(b), "welcome:") {
		t.Fatalf("welcome: %q %v", b, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(t.Context(), websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(t.Context()); err != nil || string(b) != "pong" {
		t.Fatalf("after the server closed: %q %v, want pong", b, err)
	}
	_, cl := startServer(t, lan.Config{DataDir: dir, IPC: hub})
	st, err := cl.IPC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Groups) != 1 || len(st.Groups[0].Peers) != 1 || st.Groups[0].Peers[0].ID != "stays" {
		t.Errorf("the new server reports %+v, want the peer that stayed", st.Groups)
	}
}
