package pipes

import (
	"context"
	"fmt"
	"net/http"

	"github.com/coder/websocket"

	"berth/needs"
)

// wsClient dials WebSockets without a connection pool. With a pooled
// transport (http.DefaultClient's), a dial whose handshake is cancelled
// after TCP connected leaves that connection idle in the pool: it never
// sends a request, and the server's graceful shutdown waits for it.
var wsClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return &http.Client{Transport: t}
}()

// DialWS opens a framed connection to a WebSocket URL (ws:// or wss://),
// sending token, if any, as a bearer token. The connection lives until Close,
// independent of ctx, which bounds the handshake only.
func DialWS(ctx context.Context, url, token string) (*Conn, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, HTTPClient: wsClient})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("dial %s: %w: token missing or wrong", url, needs.ErrUnauthorized)
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	return NewConn(websocket.NetConn(context.Background(), c, websocket.MessageBinary), MaxFrame), nil
}

// AcceptWS upgrades an HTTP request to a framed connection.
func AcceptWS(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil, err
	}
	return NewConn(websocket.NetConn(context.Background(), c, websocket.MessageBinary), MaxFrame), nil
}
