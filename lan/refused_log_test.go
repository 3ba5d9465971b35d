package lan_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"berth/lan"
)

type syncBuffer struct {
	mu sync.Mutex // Protects following.
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRefusedRequestsLogged: the lanmanager says who knocks with a wrong
// token or from a web page, once per client and reason per interval, not
// once per request.
func TestRefusedRequestsLogged(t *testing.T) {
	var logs syncBuffer
	srv, _ := startServer(t, lan.Config{Token: "tok", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 50 {
		if code, _ := call(t, srv, "GET", "/v1/needs", "Bearer wrong", ""); code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", code)
		}
	}
	for range 20 {
		rawCall(t, srv, "GET", "/v1/needs", map[string]string{"Origin": "http://evil.example", "Authorization": "Bearer tok"}, "")
	}
	// A refused request's connection is closed by the server.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+srv.Addr()+"/v1/needs", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Errorf("401 answer (status %d) keeps the connection", resp.StatusCode)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="refused a request" why="missing or wrong bearer token"`); n != 1 {
		t.Errorf("%d log lines for 50 requests with a wrong token, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `why=cross-origin`); n != 1 {
		t.Errorf("%d log lines for 20 cross-origin requests, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "remote=127.0.0.1") {
		t.Errorf("refusal not logged at WARN with the client's address:\n%s", out)
	}
}
