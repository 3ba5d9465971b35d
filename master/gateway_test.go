package master_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/internal/freeports"
	"berth/lan"
	"berth/needs"
)

// TestMasterGateway: a master with a gatewayaddress serves the gateway
// too, with the needs the lanmanager publishes and its token: a client
// connected there is answered by the need's instance, pushed to through
// that master's management paths, and an unpublished need is refused.
func TestMasterGateway(t *testing.T) {
	gw, err := lan.OpenGateway(t.Context(), lan.GatewayConfig{Listen: "127.0.0.1:0", Token: "gw-token", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t),
		BidWindow: time.Second, StopGrace: time.Second, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := &lan.Client{Addr: srv.Addr()}
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	gwAddr := fmt.Sprintf("127.0.0.5:%d", freeports.Port(t))
	cfg := testConfig(t, srv.Addr())
	cfg.GatewayAddress = gwAddr
	a := openAgent(t, cfg)
	waitFor(t, 10*time.Second, "the master to link", a.Linked)
	exe, _ := os.Executable()
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{exe}, Instances: &one, Gateway: true,
		Protocols: []needs.Protocol{needs.HTTP}, Env: map[string]string{"AGENT_TEST_HTTP": "1"}}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "web", 1, a)

	var ws *websocket.Conn
	waitFor(t, 20*time.Second, "the master's gateway to answer", func() bool {
		conn, _, err := websocket.Dial(t.Context(), "ws://"+gwAddr+"/web", nil)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if conn.Write(ctx, websocket.MessageText, []byte(`{"name":"hello","headers":{"message-id":"g1"}}`)) != nil {
			conn.CloseNow()
			return false
		}
		_, b, err := conn.Read(ctx)
		var r struct {
			StatusCode int
			Headers    map[string]string
			Body       string
		}
		if err != nil || json.Unmarshal(b, &r) != nil || r.StatusCode != 200 || r.Body != "web.0 /hello" || r.Headers["message-id"] != "g1" {
			conn.CloseNow()
			return false
		}
		ws = conn
		return true
	})
	defer ws.CloseNow()

	// Its management paths take the lanmanager's gateway token.
	req, _ := http.NewRequest(http.MethodGet, "http://"+gwAddr+"/@connections", nil)
	req.Header.Set("Authorization", "Bearer gw-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var conns []struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&conns)
	resp.Body.Close()
	if len(conns) != 1 {
		t.Fatalf("the master's gateway lists %d connections, want 1", len(conns))
	}
	req, _ = http.NewRequest(http.MethodPost, "http://"+gwAddr+"/@connections/"+conns[0].ID, strings.NewReader("pushed"))
	req.Header.Set("Authorization", "Bearer gw-token")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, b, err := ws.Read(t.Context()); err != nil || string(b) != "pushed" {
		t.Errorf("pushed frame %q %v", b, err)
	}
	resp, err = http.Get("http://" + gwAddr + "/other")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unpublished need: %v %v, want 404", resp, err)
	}
	resp.Body.Close()
}
