package lan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"berth/needs"
)

// Events follows /v1/events, calling fn with every event until ctx ends
// (then it returns nil), fn returns an error, or the stream breaks.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	base, err := BaseURL(c.Addr)
	if err != nil {
		return err
	}
	u := "ws" + strings.TrimPrefix(base, "http") + "/v1/events"
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if c.Token != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+c.Token)
	}
	if c.HTTP != nil {
		opts.HTTPClient = c.HTTP
	}
	ws, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return &APIError{Status: resp.StatusCode, Message: "missing or wrong bearer token: pass --token, BERTH_TOKEN or --token-file"}
		}
		if resp != nil {
			return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("events: %s", resp.Status)}
		}
		return fmt.Errorf("lanmanager at %s: %w", base, err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(16 << 20)
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				ws.Close(websocket.StatusNormalClosure, "")
				return nil
			}
			if s := websocket.CloseStatus(err); s == websocket.StatusGoingAway {
				return errors.New("the lanmanager is shutting down")
			}
			return fmt.Errorf("events: %w", err)
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("events: decode %q: %w", b, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// Describe is one line that says what the event is about.
func (e Event) Describe() string {
	var b strings.Builder
	b.WriteString(e.Kind)
	if in := e.Instance; in != nil {
		fmt.Fprintf(&b, " %s %s", in.Name, in.State)
		if in.Master != "" {
			fmt.Fprintf(&b, " on %s", in.Master)
		}
		if in.State == needs.Running && len(in.Ports) > 0 {
			var ps []string
			for _, p := range needs.Protocols {
				if n, ok := in.Ports[p]; ok {
					ps = append(ps, fmt.Sprintf("%s:%d", p, n))
				}
			}
			fmt.Fprintf(&b, " (%s)", strings.Join(ps, ","))
		}
		if in.Reason != "" && in.State != needs.Running {
			fmt.Fprintf(&b, ": %s", in.Reason)
		}
	} else if e.Need != "" {
		fmt.Fprintf(&b, " %s", e.Need)
	}
	if m := e.Master; m != nil {
		fmt.Fprintf(&b, " %s (%s)", m.Name, m.Address)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}
