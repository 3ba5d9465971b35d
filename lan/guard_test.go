package lan_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"berth/lan"
)

// rawCall sends one request with the given headers and returns the status
// and body.
func rawCall(t *testing.T, srv *lan.Server, method, path string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+srv.Addr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestBrowserCrossOriginPost is the repro: a web page's
// cross-origin text/plain POST used to declare a need that runs a command
// (201). With or without a token, it must be refused and declare nothing.
func TestBrowserCrossOriginPost(t *testing.T) {
	const body = `{"name":"pwn","command":["sh","-c","id > /tmp/pwned; sleep 3600"]}`
	for _, token := range []string{"", "s3cret"} {
		srv, c := newTestServer(t, token)
		auth := ""
		if token != "" {
			auth = "Bearer " + token
		}
		tests := []struct {
			name   string
			header map[string]string
			want   int
		}{
			{"text/plain from a foreign origin", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"}, http.StatusForbidden},
			{"json from a foreign origin", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, http.StatusForbidden},
			{"origin null (sandboxed frame)", map[string]string{"Origin": "null", "Content-Type": "application/json"}, http.StatusForbidden},
			{"same host, other port", map[string]string{"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"}, http.StatusForbidden},
			{"Sec-Fetch-Site cross-site without Origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, http.StatusForbidden},
			{"text/plain without Origin", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, http.StatusUnsupportedMediaType},
			{"form without Origin", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
			{"no Content-Type", map[string]string{}, http.StatusUnsupportedMediaType},
			{"rebound host name", map[string]string{"Host": "evil.example", "Content-Type": "application/json"}, http.StatusMisdirectedRequest},
			{"rebound host name with port", map[string]string{"Host": "evil.example:23552", "Content-Type": "application/json"}, http.StatusMisdirectedRequest},
			{"an address of another machine", map[string]string{"Host": "192.0.2.1", "Content-Type": "application/json"}, http.StatusMisdirectedRequest},
		}
		for _, tt := range tests {
			h := map[string]string{}
			for k, v := range tt.header {
				h[k] = v
			}
			if auth != "" {
				h["Authorization"] = auth
			}
			code, resp := rawCall(t, srv, "POST", "/v1/needs", h, body)
			if code != tt.want {
				t.Errorf("token %q, %s: status %d (%s), want %d", token, tt.name, code, resp, tt.want)
			}
			if !strings.Contains(resp, `"error"`) {
				t.Errorf("token %q, %s: answer %q carries no error message", token, tt.name, resp)
			}
		}
		list, err := c.Needs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 0 {
			t.Fatalf("token %q: a refused request declared %d needs", token, len(list))
		}
		// The API's own origin, and a CLI without Origin, still work.
		h := map[string]string{"Origin": "http://" + srv.Addr(), "Content-Type": "application/json; charset=utf-8"}
		if auth != "" {
			h["Authorization"] = auth
		}
		if code, resp := rawCall(t, srv, "POST", "/v1/needs", h, `{"name":"ok","command":["true"],"instances":0}`); code != http.StatusCreated {
			t.Errorf("token %q: same-origin POST: %d %s", token, code, resp)
		}
	}
}

// TestHostNames checks which Host headers name the lanmanager: loopback,
// localhost, the machine's names and addresses, --allowed-host entries.
func TestHostNames(t *testing.T) {
	srv, _ := startServer(t, lan.Config{AllowedHosts: []string{"berth.example", "Other.Example."}})
	_, port, _ := net.SplitHostPort(srv.Addr())
	ok := []string{"127.0.0.1", "127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "[::1]:" + port,
		"berth.example", "other.example:" + port, "127.8.9.10"}
	if h, err := os.Hostname(); err == nil && h != "" {
		ok = append(ok, h, h+":"+port)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, isNet := a.(*net.IPNet); isNet && n.IP.To4() != nil {
				ok = append(ok, n.IP.String()+":"+port)
			}
		}
	}
	for _, h := range ok {
		if code, resp := rawCall(t, srv, "GET", "/v1/needs", map[string]string{"Host": h}, ""); code != http.StatusOK {
			t.Errorf("Host %q: %d %s, want 200", h, code, resp)
		}
	}
	for _, h := range []string{"evil.example", "localhost.evil.example", "berth.example.evil", "203.0.113.9:" + port, "[2001:db8::1]"} {
		code, resp := rawCall(t, srv, "GET", "/v1/needs", map[string]string{"Host": h}, "")
		if code != http.StatusMisdirectedRequest {
			t.Errorf("Host %q: %d %s, want 421", h, code, resp)
		}
		if code == http.StatusMisdirectedRequest && !strings.Contains(resp, "--allowed-host") {
			t.Errorf("Host %q: answer %q does not say how to allow it", h, resp)
		}
	}
}

// TestWebSocketsRefuseForeignOrigins: a page cannot open the event stream
// or pose as a master, token or not.
func TestWebSocketsRefuseForeignOrigins(t *testing.T) {
	srv, _ := newTestServer(t, "tok")
	for _, path := range []string{"/v1/events", "/v1/link"} {
		for _, h := range []http.Header{
			{"Origin": {"http://evil.example"}, "Authorization": {"Bearer tok"}},
			{"Host": {"evil.example"}, "Authorization": {"Bearer tok"}},
		} {
			opts := &websocket.DialOptions{HTTPHeader: h.Clone()}
			if host := h.Get("Host"); host != "" {
				opts.Host = host
				opts.HTTPHeader.Del("Host")
			}
			ws, resp, err := websocket.Dial(context.Background(), "ws://"+srv.Addr()+path, opts)
			if err == nil {
				ws.CloseNow()
				t.Errorf("%s with %v: upgraded", path, h)
				continue
			}
			if resp == nil || (resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusMisdirectedRequest) {
				t.Errorf("%s with %v: %v, want 403 or 421", path, h, err)
			}
		}
	}
}
