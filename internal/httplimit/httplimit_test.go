package httplimit_test

import (
	"net"
	"net/http"
	"testing"

	"berth/internal/httplimit"
	"berth/internal/httplimit/limittest"
)

func TestLimits(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := httplimit.Limit(raw, 3)
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
}
