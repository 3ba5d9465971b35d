package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// conn is one client's socket.
type conn struct {
	s        *Server
	id, need string
	remote   string
	since    time.Time
	postback string
	ws       *websocket.Conn
	messages atomic.Int64
	heard    atomic.Int64 // unix nanoseconds of the last frame read
	ctx      context.Context
	cancel   context.CancelFunc
	inflight chan struct{}
	once     sync.Once
}

// close closes the socket with code and reason, once: it sends the close
// frame and waits (the websocket library bounds it) for the client's.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		c.ws.Close(code, truncate(reason))
		c.cancel()
	})
}

// hopHeaders are not passed on, either way.
var hopHeaders = map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true, "content-length": true, "host": true, "sec-websocket-key": true,
	"sec-websocket-version": true, "sec-websocket-extensions": true, "sec-websocket-accept": true}

// handleConnect serves GET /{need}: on_connect, then the socket's life.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	need := r.PathValue("need")
	if s.opts.Published != nil && !s.opts.Published(need) {
		http.Error(w, fmt.Sprintf("no need %q is published on this gateway (need add ... --gateway)", need), http.StatusNotFound)
		return
	}
	id := newID()
	c := &conn{s: s, id: id, need: need, remote: r.RemoteAddr, since: time.Now(), postback: postbackURL(r, id),
		inflight: make(chan struct{}, s.opts.MaxInFlight)}
	// on_connect decides before the socket exists; its answer is given
	// once it does, so that a browser sees the close code.
	code, why := s.onConnect(r, c)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:   requestedProtocols(r), // echoed
		OriginPatterns: []string{"*"},         // web pages of any origin; on_connect sees Origin and decides
	})
	if err != nil {
		s.log.Debug("gateway accept", "need", need, "err", err)
		return
	}
	c.ws = ws
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	defer c.cancel()
	if code != 0 {
		ws.Close(code, truncate(why))
		return
	}
	ok, why := s.register(c)
	if !ok {
		ws.Close(websocket.StatusTryAgainLater, truncate(why))
		return
	}
	defer s.wg.Done()
	ws.SetReadLimit(int64(s.opts.MaxMessage))
	c.heard.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Go(c.keepalive)
	c.read(&wg)
	c.cancel()
	wg.Wait()
	s.unregister(c)
	s.onDisconnect(c)
}

func truncate(reason string) string {
	if len(reason) > 123 {
		return reason[:120] + "..."
	}
	return reason
}

// requestedProtocols are the client's Sec-WebSocket-Protocol values.
func requestedProtocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// onConnect posts /on_connect; it returns 0 to accept, or the close code
// and reason.
func (s *Server) onConnect(r *http.Request, c *conn) (websocket.StatusCode, string) {
	addr, err := s.opts.Pick(c.need)
	if err != nil {
		return websocket.StatusTryAgainLater, fmt.Sprintf("no running instance of %s: %v", c.need, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/on_connect", http.NoBody)
	if err != nil {
		return websocket.StatusInternalError, err.Error()
	}
	for k, vs := range r.Header {
		if !hopHeaders[strings.ToLower(k)] {
			req.Header[k] = vs
		}
	}
	req.Header.Set("connection-id", c.id)
	req.Header.Set("postback-url", c.postback)
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return websocket.StatusInternalError, fmt.Sprintf("on_connect: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode >= 400 {
		return websocket.StatusPolicyViolation, strings.TrimSpace(fmt.Sprintf("Policy Violation: %d %s", resp.StatusCode, bytes.TrimSpace(body)))
	}
	return 0, ""
}

// onDisconnect posts /on_disconnect, best effort.
func (s *Server) onDisconnect(c *conn) {
	addr, err := s.opts.Pick(c.need)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/on_disconnect", http.NoBody)
	if err != nil {
		return
	}
	req.Header.Set("connection-id", c.id)
	if resp, err := s.opts.Client.Do(req); err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
}

// read takes the client's messages until its socket ends, and answers
// each in a goroutine of wg (at most MaxInFlight at once).
func (c *conn) read(wg *sync.WaitGroup) {
	rate := c.s.opts.MaxRate
	tokens, last := rate, time.Now()
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		now := time.Now()
		c.heard.Store(now.UnixNano())
		tokens = min(rate, tokens+now.Sub(last).Seconds()*rate)
		last = now
		if tokens < 1 {
			c.close(websocket.StatusPolicyViolation, fmt.Sprintf("rate limit: more than %g messages per second", rate))
			return
		}
		tokens--
		if typ != websocket.MessageText {
			c.close(websocket.StatusUnsupportedData, "binary frames are not supported: send text (JSON)")
			return
		}
		c.messages.Add(1)
		select {
		case c.inflight <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-c.inflight }()
			c.answer(data)
		})
	}
}

// keepalive pings a socket silent for PingEvery and closes it when no pong
// comes within PongTimeout.
func (c *conn) keepalive() {
	every := c.s.opts.PingEvery
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		silent := time.Since(time.Unix(0, c.heard.Load()))
		if silent < every {
			t.Reset(every - silent)
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.PongTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.close(websocket.StatusGoingAway, fmt.Sprintf("idle: no pong within %s", c.s.opts.PongTimeout))
			}
			return
		}
		c.heard.Store(time.Now().UnixNano())
		t.Reset(every)
	}
}

// send writes one reply as a text frame.
func (c *conn) send(r *Reply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.ws.Write(c.ctx, websocket.MessageText, b)
}

// answer handles one message: the instance's answer, or the gateway's
// error, always with the message-id.
func (c *conn) answer(data []byte) {
	m, err := ParseMessage(data)
	if err != nil {
		c.send(errorReply(http.StatusBadRequest, m.MessageID(), err.Error()))
		return
	}
	addr, err := c.s.opts.Pick(c.need)
	if err != nil {
		c.send(errorReply(http.StatusServiceUnavailable, m.MessageID(), fmt.Sprintf("no running instance of %s: %v", c.need, err)))
		return
	}
	u := "http://" + addr + "/" + m.Name // "/" for a message without a name
	if q := m.queryString(); q != "" {
		u += "?" + q
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	timer := time.AfterFunc(c.s.opts.RequestTimeout, cancel) // up to the headers; stopped once they came
	var body io.Reader = http.NoBody
	if len(m.Payload) > 0 {
		body = bytes.NewReader(m.Payload)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		timer.Stop()
		c.send(errorReply(http.StatusBadRequest, m.MessageID(), err.Error()))
		return
	}
	for k, v := range m.Headers {
		if !hopHeaders[k] {
			req.Header.Set(k, v)
		}
	}
	if len(m.Payload) > 0 {
		req.Header.Set("Content-Type", "application/json")
		if m.Raw {
			req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	req.Header.Set("connection-id", c.id)
	req.Header.Set("message-id", m.MessageID())
	req.Header.Set("postback-url", c.postback)
	resp, err := c.s.opts.Client.Do(req)
	timer.Stop()
	if err != nil {
		if c.ctx.Err() != nil {
			return // the client left
		}
		c.send(errorReply(http.StatusInternalServerError, m.MessageID(), fmt.Sprintf("instance of %s: %v", c.need, err)))
		return
	}
	defer resp.Body.Close()
	headers := replyHeaders(resp.Header, m.MessageID())
	if resp.ContentLength < 0 && len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked" {
		c.stream(resp, headers, m.MessageID())
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.s.opts.MaxReply)+1))
	switch {
	case err != nil:
		c.send(errorReply(http.StatusInternalServerError, m.MessageID(), fmt.Sprintf("instance of %s: reading its answer: %v", c.need, err)))
	case len(b) > c.s.opts.MaxReply:
		c.send(errorReply(http.StatusBadGateway, m.MessageID(), fmt.Sprintf("the answer is over %d bytes: stream it (chunked)", c.s.opts.MaxReply)))
	default:
		c.send(&Reply{StatusCode: resp.StatusCode, Headers: headers, Body: bodyJSON(b)})
	}
}

// streamChunk bounds one frame of a streamed answer.
const streamChunk = 32 << 10

// stream relays a chunked answer: frames with one x-stream-id and
// x-stream: chunk, then x-stream: done. Each frame is written before the
// next read from the instance, so a client that reads slowly slows the
// instance down rather than growing the gateway's memory.
func (c *conn) stream(resp *http.Response, headers map[string]string, messageID string) {
	buf := make([]byte, streamChunk)
	n, err := io.ReadFull(resp.Body, buf[:1])
	if n == 0 && errors.Is(err, io.EOF) { // chunked but empty (a flushed 202): a plain answer
		c.send(&Reply{StatusCode: resp.StatusCode, Headers: headers})
		return
	}
	first := append([]byte(nil), buf[:n]...)
	sid := newID()
	frame := func(kind string, b []byte) error {
		h := make(map[string]string, len(headers)+2)
		for k, v := range headers {
			h[k] = v
		}
		h["x-stream-id"], h["x-stream"] = sid, kind
		return c.send(&Reply{StatusCode: resp.StatusCode, Headers: h, Body: bodyJSON(b)})
	}
	body := io.MultiReader(bytes.NewReader(first), resp.Body)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if werr := frame("chunk", buf[:n]); werr != nil {
				return // the client is gone
			}
		}
		if errors.Is(err, io.EOF) {
			frame("done", nil)
			return
		}
		if err != nil {
			if c.ctx.Err() == nil {
				c.send(errorReply(http.StatusInternalServerError, messageID, fmt.Sprintf("instance of %s: stream %s broke: %v", c.need, sid, err)))
			}
			return
		}
	}
}

// replyHeaders are an answer's headers for the client: lower-cased, one
// value each, without hop-by-hop ones and Date, with the message-id.
func replyHeaders(h http.Header, messageID string) map[string]string {
	out := map[string]string{}
	for k, vs := range h {
		lk := strings.ToLower(k)
		if hopHeaders[lk] || lk == "date" || len(vs) == 0 {
			continue
		}
		out[lk] = strings.Join(vs, ", ")
	}
	if messageID != "" {
		out["message-id"] = messageID
	}
	return out
}
