package master

import (
	"log/slog"
	"testing"

	"berth/internal/httplimit/limittest"
	"berth/pipes"
)

// TestMasterGatewayLimits: a master's gateway bounds its connections,
// closes clients that never send a header and answers huge headers 431,
// as the lanmanager's servers do.
func TestMasterGatewayLimits(t *testing.T) {
	g := newMasterGateway("127.0.0.1:0", NewMirror(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	g.maxConns = 4
	defer g.close()
	g.setMesh(&pipes.Mesh{GatewayToken: "gw-token"})
	g.mu.Lock()
	ln := g.ln
	g.mu.Unlock()
	if ln == nil {
		t.Fatal("the gateway did not open at its first mesh frame")
	}
	limittest.Check(t, ln.Addr().String(), 4, ln.Peak)
}
