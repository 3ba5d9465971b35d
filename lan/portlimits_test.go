package lan_test

import (
	"log/slog"
	"testing"

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
