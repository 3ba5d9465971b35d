package httplimit_test

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/httplimit"
	"berth/internal/httplimit/limittest"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLimits: the limits hold (limittest.Check), the full cap is logged
// once (not once per waiting client), and closing the server frees every
// slot.
func TestLimits(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuf
	ln := httplimit.Limit(raw, 3, slog.New(slog.NewTextHandler(&logs, nil)))
	srv := httplimit.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	limittest.Check(t, ln.Addr().String(), 3, ln.Peak)
	srv.Close()
	if err := <-done; err != http.ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
	if n := ln.Open(); n != 0 {
		t.Errorf("%d connections still counted open after Close", n)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"connection cap reached"); n != 1 {
		t.Errorf("%d lines say the cap was reached, want 1:\n%s", n, logs.String())
	}
}

// TestSlowBodies: a client that announces a body and never sends it held
// its connection for ever, even after a 401 (the server reads what is left
// of a body before it closes). BoundBodies closes it after its timeout,
// and WebSocket-style requests without a body are not bounded.
func TestSlowBodies(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := httplimit.Limit(raw, 2, nil)
	srv := httplimit.Server(nil)
	srv.Handler = httplimit.BoundBodies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			http.Error(w, "unauthorized", http.StatusUnauthorized) // as the API answers a call without its token
		}
	}), 300*time.Millisecond)
	go srv.Serve(ln)
	defer srv.Close()
	limittest.CheckSlowBodies(t, ln.Addr().String(), 2, ln.Peak)
}
