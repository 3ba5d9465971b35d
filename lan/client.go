package lan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"berth/needs"
)

// Client talks to a lanmanager's HTTP API.
type Client struct {
	// Addr is the base URL, e.g. "http://127.0.0.1:23552"; a bare host:port
	// gets "http://".
	Addr  string
	Token string
	HTTP  *http.Client
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Unwrap maps the status to the needs sentinel it stands for.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return needs.ErrInvalid
	case http.StatusNotFound:
		return needs.ErrNotFound
	case http.StatusConflict:
		return needs.ErrExists
	case http.StatusUnauthorized:
		return needs.ErrUnauthorized
	}
	return nil
}

// BaseURL normalises an address to an http(s) base URL.
func BaseURL(addr string) (string, error) {
	if addr == "" {
		addr = DefaultListen
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", addr, err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("address %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return "", fmt.Errorf("address %q: no host", addr)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host, "/"), nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s answer: %w", method, path, err)
		}
	}
	return nil
}

// send makes one call and returns the answer for the caller to read and
// close; an error status comes back as an *APIError instead.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	base, err := BaseURL(c.Addr)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lanmanager at %s: %w", base, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
}

// AddNeed declares a need.
func (c *Client) AddNeed(ctx context.Context, spec NeedSpec) (*needs.NeedStatus, error) {
	var st needs.NeedStatus
	return &st, c.do(ctx, http.MethodPost, "/v1/needs", spec, &st)
}

// Needs lists needs.
func (c *Client) Needs(ctx context.Context) ([]*needs.NeedStatus, error) {
	var out []*needs.NeedStatus
	return out, c.do(ctx, http.MethodGet, "/v1/needs", nil, &out)
}

// Need shows one need.
func (c *Client) Need(ctx context.Context, name string) (*needs.NeedStatus, error) {
	var st needs.NeedStatus
	return &st, c.do(ctx, http.MethodGet, "/v1/needs/"+url.PathEscape(name), nil, &st)
}

// Scale sets a need's instance count.
func (c *Client) Scale(ctx context.Context, name string, n int) (*needs.NeedStatus, error) {
	var st needs.NeedStatus
	return &st, c.do(ctx, http.MethodPatch, "/v1/needs/"+url.PathEscape(name), ScaleSpec{Instances: &n}, &st)
}

// RemoveNeed removes a need.
func (c *Client) RemoveNeed(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/needs/"+url.PathEscape(name), nil, nil)
}

// Services lists placed instances.
func (c *Client) Services(ctx context.Context) ([]*needs.Instance, error) {
	var out []*needs.Instance
	return out, c.do(ctx, http.MethodGet, "/v1/services", nil, &out)
}

// Masters lists masters.
func (c *Client) Masters(ctx context.Context) ([]*needs.Master, error) {
	var out []*needs.Master
	return out, c.do(ctx, http.MethodGet, "/v1/masters", nil, &out)
}

// RestartNeed retries a need's backed-off instances now.
func (c *Client) RestartNeed(ctx context.Context, name string) (*needs.NeedStatus, error) {
	var st needs.NeedStatus
	return &st, c.do(ctx, http.MethodPost, "/v1/needs/"+url.PathEscape(name)+"/restart", nil, &st)
}

// Drain starts draining a master: no new work, its instances move away.
func (c *Client) Drain(ctx context.Context, master string) (*needs.Master, error) {
	var m needs.Master
	return &m, c.do(ctx, http.MethodPost, "/v1/masters/"+url.PathEscape(master)+"/drain", nil, &m)
}

// Undrain ends a master's drain.
func (c *Client) Undrain(ctx context.Context, master string) (*needs.Master, error) {
	var m needs.Master
	return &m, c.do(ctx, http.MethodPost, "/v1/masters/"+url.PathEscape(master)+"/undrain", nil, &m)
}

// Rebalance asks for a need's instances to be spread evenly over the
// masters that may take them, and returns what will move.
func (c *Client) Rebalance(ctx context.Context, need string) (*Rebalance, error) {
	var rb Rebalance
	return &rb, c.do(ctx, http.MethodPost, "/v1/needs/"+url.PathEscape(need)+"/rebalance", nil, &rb)
}

// RebalanceAll is Rebalance for every need.
func (c *Client) RebalanceAll(ctx context.Context) ([]*Rebalance, error) {
	var out []*Rebalance
	return out, c.do(ctx, http.MethodPost, "/v1/rebalance", nil, &out)
}

// IPC reports the lanmanager's IPC hub: its groups, peers and counters.
func (c *Client) IPC(ctx context.Context) (*IPCStatus, error) {
	var st IPCStatus
	return &st, c.do(ctx, http.MethodGet, "/v1/ipc", nil, &st)
}
