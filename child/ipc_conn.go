package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ipcConn is one WebSocket connection to the hub.
type ipcConn struct {
	ws         *websocket.Conn
	maxPayload int           // from the welcome frame
	since      time.Time     // when it was welcomed
	wmu        chan struct{} // held (full) by the one writer; waiting honours the caller's ctx
	lastRecv   atomic.Int64  // when the last frame came, as time since IPC.epoch
	dead       chan struct{} // closed once the connection is detached

	pingMu sync.Mutex    // Protects following.
	pings  int64         // pings written
	pongs  int64         // pongs read; the hub answers pings in order
	pong   chan struct{} // closed at the next pong
}

func newIPCConn(ws *websocket.Conn, maxPayload int) *ipcConn {
	return &ipcConn{ws: ws, maxPayload: maxPayload, since: time.Now(),
		wmu: make(chan struct{}, 1), dead: make(chan struct{}), pong: make(chan struct{})}
}

// write writes one text frame. ctx bounds the wait for the writer's turn;
// once writing, timeout bounds the write, after which the websocket library
// closes the connection. For a ping it returns the ping's number, for
// waitPong.
func (cn *ipcConn) write(ctx context.Context, frame []byte, timeout time.Duration) (int64, error) {
	select {
	case cn.wmu <- struct{}{}:
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
	defer func() { <-cn.wmu }()
	wctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := cn.ws.Write(wctx, websocket.MessageText, frame); err != nil {
		return 0, err
	}
	if string(frame) != framePing {
		return 0, nil
	}
	cn.pingMu.Lock()
	defer cn.pingMu.Unlock()
	cn.pings++
	return cn.pings, nil
}

// gotPong counts a pong and wakes its waiters.
func (cn *ipcConn) gotPong() {
	cn.pingMu.Lock()
	defer cn.pingMu.Unlock()
	cn.pongs++
	close(cn.pong)
	cn.pong = make(chan struct{})
}

// nextPong returns a channel closed at the next pong.
func (cn *ipcConn) nextPong() <-chan struct{} {
	cn.pingMu.Lock()
	defer cn.pingMu.Unlock()
	return cn.pong
}

// waitPong waits until ping number n is answered: the hub has then routed
// every frame written before it.
func (cn *ipcConn) waitPong(ctx context.Context, n int64) error {
	for {
		cn.pingMu.Lock()
		pongs, next := cn.pongs, cn.pong
		cn.pingMu.Unlock()
		if pongs >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-cn.dead:
			return net.ErrClosed
		case <-next:
		}
	}
}

// barrier pings the hub and waits for its pong, so that what follows on
// another path (a POST) comes after every frame written so far.
func (cn *ipcConn) barrier(ctx context.Context, timeout time.Duration) error {
	n, err := cn.write(ctx, []byte(framePing), timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return cn.waitPong(ctx, n)
}

// connect dials the hub and reads its welcome.
func (c *IPC) connect(ctx context.Context) (*ipcConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.PongTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, c.connURL, &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		return nil, c.dialError(resp, err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("read ipc welcome from %s: %w", c.opts.Addr, err)
	}
	f := parseHubFrame(b)
	if f.kind != hubWelcome {
		ws.Close(websocket.StatusProtocolError, "berth ipc: welcome expected")
		return nil, fmt.Errorf("read ipc welcome from %s: %w: first frame %.60q", c.opts.Addr, errWelcome, b)
	}
	n, err := parseWelcome(f.arg)
	if err != nil {
		ws.Close(websocket.StatusProtocolError, "berth ipc: bad welcome")
		return nil, fmt.Errorf("read ipc welcome from %s: %w", c.opts.Addr, err)
	}
	// The hub forwards frames of at most maxPayload; notices carry an id.
	ws.SetReadLimit(int64(n) + 4096)
	cn := newIPCConn(ws, n)
	cn.lastRecv.Store(int64(time.Since(c.epoch)))
	return cn, nil
}

// dialError says what the hub answered to a failed upgrade.
func (c *IPC) dialError(resp *http.Response, err error) error {
	addr := c.opts.Addr
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return fmt.Errorf("dial ipc hub %s: %w", addr, c.redactToken(err))
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 200))
	}
	return fmt.Errorf("dial ipc hub %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
}

// run is the reader goroutine: it serves each connection until it drops,
// then reconnects, until Close.
func (c *IPC) run(cn *ipcConn) {
	for cn != nil {
		err := c.serve(cn)
		down := time.Now()
		if down.Sub(cn.since) >= c.opts.ReconnectMax {
			c.delay = c.opts.ReconnectMin // it was up a while: not a flapping hub
		}
		c.detach(cn, err)
		cn = c.reconnect(down)
	}
}

// serve reads cn's frames until it drops, with a keepalive beside; it
// returns why it dropped.
func (c *IPC) serve(cn *ipcConn) error {
	stop := make(chan struct{})
	var kerr error
	var wg sync.WaitGroup
	wg.Go(func() { kerr = c.keepalive(cn, stop) })
	err := c.read(cn)
	close(stop)
	wg.Wait()
	if kerr != nil {
		return kerr
	}
	return err
}

// read queues the frames of cn until it fails.
func (c *IPC) read(cn *ipcConn) error {
	for {
		// No ctx: the keepalive closes cn at Close or when the hub is silent.
		_, b, err := cn.ws.Read(context.Background())
		if err != nil {
			return err
		}
		cn.lastRecv.Store(int64(time.Since(c.epoch)))
		f := parseHubFrame(b)
		switch f.kind {
		case hubPong:
			cn.gotPong()
		case hubWelcome:
			c.log.Debug("ipc welcome again, ignored", "frame", string(b))
		case hubJoin:
			c.enqueue(ipcEvent{kind: evJoin, s: string(f.arg)})
		case hubLeave:
			c.enqueue(ipcEvent{kind: evLeave, s: string(f.arg)})
		case hubLarge:
			c.enqueue(ipcEvent{kind: evLarge, s: string(f.arg)})
		case hubMessage:
			c.enqueue(ipcEvent{kind: evMessage, data: f.arg})
		}
	}
}

// keepalive pings cn once the hub has been silent for PingAfter and closes
// it when nothing comes within PongTimeout of the ping. At Close it closes
// cn politely. It returns when stop is closed, or with ErrNoPong.
func (c *IPC) keepalive(cn *ipcConn, stop <-chan struct{}) error {
	since := func() time.Duration { return time.Since(c.epoch) }
	t := time.NewTimer(c.opts.PingAfter)
	defer t.Stop()
	pinged := time.Duration(-1) // when the unanswered ping went, or -1
	var pong <-chan struct{}    // closed at the pong after the ping; nil when none is awaited
	for {
		select {
		case <-stop:
			return nil
		case <-c.ctx.Done():
			c.closePolitely(cn)
			return nil
		case <-t.C:
		case <-pong:
		}
		now, last := since(), time.Duration(cn.lastRecv.Load())
		if pinged >= 0 && last >= pinged {
			pinged, pong = -1, nil // a frame came after the ping: the hub is alive
		}
		if pinged >= 0 {
			if waited := now - pinged; waited < c.opts.PongTimeout {
				t.Reset(c.opts.PongTimeout - waited)
				continue
			}
			cn.ws.CloseNow()
			return fmt.Errorf("%w within %s", ErrNoPong, c.opts.PongTimeout)
		}
		if idle := now - last; idle < c.opts.PingAfter {
			t.Reset(c.opts.PingAfter - idle)
			continue
		}
		// Both before writing: the pong may come before the write returns.
		pinged, pong = since(), cn.nextPong()
		if _, err := cn.write(c.ctx, []byte(framePing), c.opts.PongTimeout); err != nil {
			cn.ws.CloseNow()
			return fmt.Errorf("send ipc ping: %w", err)
		}
		t.Reset(c.opts.PongTimeout)
	}
}

// closePolitely sends a close frame and waits up to ipcCloseGrace for
// the hub's answer, then cuts the connection.
func (c *IPC) closePolitely(cn *ipcConn) {
	t := time.AfterFunc(ipcCloseGrace, func() { cn.ws.CloseNow() })
	cn.ws.Close(websocket.StatusNormalClosure, "")
	if !t.Stop() {
		cn.ws.CloseNow() // waits for the timer's call to finish
	}
}

// detach forgets cn, which dropped for err, and closes it.
func (c *IPC) detach(cn *ipcConn, err error) {
	c.mu.Lock()
	if c.conn == cn {
		c.conn = nil
		c.up = make(chan struct{})
	}
	closed := c.closed
	c.mu.Unlock()
	cn.ws.CloseNow()
	close(cn.dead)
	if closed {
		return
	}
	if websocket.CloseStatus(err) == websocket.StatusPolicyViolation {
		c.log.Warn("ipc connection replaced: another client uses this id", "err", err)
	} else {
		c.log.Warn("ipc connection lost", "err", err, "up", time.Since(cn.since).Round(time.Millisecond))
	}
	c.enqueue(ipcEvent{kind: evDisconnect, err: err})
}

// reconnect dials with back-off until it gets a new connection, which it
// makes live, or until Close, when it returns nil. down is when the last
// connection dropped.
func (c *IPC) reconnect(down time.Time) *ipcConn {
	var lastErr string
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(jitter(c.delay))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		c.delay = min(2*c.delay, c.opts.ReconnectMax)
		cn, err := c.connect(c.ctx)
		if err != nil {
			// A refusal (a changed token) would retry forever: say it
			// once, and again whenever the reason changes.
			level := slog.LevelDebug
			if err.Error() != lastErr {
				level, lastErr = slog.LevelWarn, err.Error()
			}
			c.log.Log(c.ctx, level, "ipc reconnect failed", "attempt", attempt, "err", err)
			continue
		}
		if !c.attach(cn) {
			return nil
		}
		c.log.Info("ipc reconnected", "down", time.Since(down).Round(time.Millisecond), "attempts", attempt)
		return cn
	}
}

// attach makes a fresh connection live; it reports false, having closed
// cn, if the client was closed meanwhile.
func (c *IPC) attach(cn *ipcConn) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.ws.CloseNow()
		return false
	}
	c.conn = cn
	close(c.up)
	c.mu.Unlock()
	c.reconnects.Add(1)
	c.enqueue(ipcEvent{kind: evConnect})
	return true
}

// postLarge POSTs frame to the hub's /send, which keeps it for its
// recipients.
func (c *IPC) postLarge(ctx context.Context, frame []byte) error {
	u := c.httpBase + "/send?" + c.authQuery("")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(frame))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	body, err := c.do(req, 64)
	if err != nil {
		return fmt.Errorf("send large ipc message: %w", err)
	}
	if string(body) != "ok" {
		return fmt.Errorf("send large ipc message: hub answered %.64q, want ok", body)
	}
	return nil
}

// fetchLarge GETs the large message msgID from the hub's /receive.
func (c *IPC) fetchLarge(msgID string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(c.ctx, ipcFetchTimeout)
	defer cancel()
	u := c.httpBase + "/receive?" + c.authQuery(msgID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	body, err := c.do(req, c.opts.MaxLarge)
	if err != nil {
		return nil, fmt.Errorf("fetch large ipc message %.40s: %w", msgID, err)
	}
	return body, nil
}

// authQuery returns the query id=&t=, and msg= unless msgID is empty.
func (c *IPC) authQuery(msgID string) string {
	q := url.Values{"id": {c.opts.ID}, "t": {c.opts.Token}}
	if msgID != "" {
		q.Set("msg", msgID)
	}
	return q.Encode()
}

// errTooLarge is wrapped when a body passes its limit.
var errTooLarge = errors.New("body too large")

// do sends req and returns the body of a 200 answer, of at most limit
// bytes.
func (c *IPC) do(req *http.Request, limit int) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.redactToken(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub answered %s: %.100s", resp.Status, strings.TrimSpace(string(body)))
	}
	if len(body) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", errTooLarge, limit)
	}
	return body, nil
}

// redactToken hides the token in the URL that the errors of net/http
// quote, so that it does not reach the logs.
func (c *IPC) redactToken(err error) error {
	if c.opts.Token == "" || err == nil {
		return err
	}
	return &redactedError{err: err, secret: "t=" + url.QueryEscape(c.opts.Token)}
}

// redactedError is err with secret replaced in its text.
type redactedError struct {
	err    error
	secret string
}

func (e *redactedError) Error() string {
	return strings.ReplaceAll(e.err.Error(), e.secret, "t=REDACTED")
}

func (e *redactedError) Unwrap() error { return e.err }
