package lan_test

import (
	"log/slog"
	"testing"
	"time"

	"berth/internal/httplimit/limittest"
	"berth/lan"
)

// TestIPCHubLimits: the IPC hub's listener bounds its connections, closes
// clients that never send a header and answers huge headers 431, as the
// API does (1,500 half-sent connections were all held open before).
func TestIPCHubLimits(t *testing.T) {
	t.Parallel()
	hub, err := lan.OpenIPC(t.Context(), lan.IPCConfig{Listen: "127.0.0.1:0", Token: "tok", MaxConns: 4,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	limittest.Check(t, hub.Addr(), 4, hub.ConnPeak)
}

// TestGatewayLimits: the same for the lanmanager's WebSocket gateway.
func TestGatewayLimits(t *testing.T) {
	t.Parallel()
	gw, err := lan.OpenGateway(t.Context(), lan.GatewayConfig{Listen: "127.0.0.1:0", Token: "gw-token", MaxConns: 4,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	limittest.Check(t, gw.Addr(), 4, gw.ConnPeak)
}

// TestAPISlowBodies: a client without the token that announces a body and
// never sends it held an API connection for ever (the 401 went out, then
// the server waited for the rest of the body): 1,024 of them locked every
// master and CLI out. Now the body has BodyTimeout to arrive.
func TestAPISlowBodies(t *testing.T) {
	srv, _ := startServer(t, lan.Config{Token: "secret", MaxConns: 4, BodyTimeout: 300 * time.Millisecond})
	limittest.CheckSlowBodies(t, srv.Addr(), 4, func() int { return int(srv.ConnPeak()) })
}
