package ipchub

import (
	"context"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// handleConnect serves GET /{group}/connect?id=&v=&t=: the WebSocket of
// one peer, for its whole life.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	group, q := r.PathValue("group"), r.URL.Query()
	id := q.Get("id")
	if v := q.Get("v"); v != "1" && !strings.HasPrefix(v, "1.") {
		http.Error(w, "Unsupported IPC client version", http.StatusConflict)
		return
	}
	if utf8.RuneCountInString(id) < 5 {
		http.Error(w, "Invalid IPC client id", http.StatusInternalServerError)
		return
	}
	who, ok := s.admit(group, q.Get("t"))
	if !ok {
		http.Error(w, "Invalid token", http.StatusForbidden)
		return
	}
	if !s.track() {
		http.Error(w, "IPC hub closing", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	c, cork, err := accept(w, r)
	if err != nil {
		s.log.Debug("ipc accept", "group", group, "id", id, "err", err)
		return
	}
	c.SetReadLimit(int64(s.opts.MaxPayload) + 1)
	p := newPeer(id, group, r.RemoteAddr, c, cork, s.opts.QueueLen)
	p.who = who
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.CloseNow()
		return
	}
	s.joinLocked(p)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p.writeLoop(s.ctx, s.opts.WriteTimeout, func() { s.slow.Add(1) })
	}()
	s.readLoop(p)
	s.mu.Lock()
	s.leaveLocked(p)
	s.mu.Unlock()
	p.shut(closeNormal)
	<-p.writerDone // it ends at once when ctx is cancelled, or after the close handshake
}

// readLoop routes p's frames until its connection ends or it sends a frame
// over MaxPayload.
//
// Reads take no cancellable context (the library would arm one per frame):
// the writer cuts the connection when the hub closes, which ends the read.
// Each frame is read into one buffer of the peer's and copied out once, at
// its size.
func (s *Server) readLoop(p *peer) {
	limit := int64(s.opts.MaxPayload)
	buf := make([]byte, 0, 512)
	for {
		_, rd, err := p.conn.Reader(context.Background())
		if err != nil {
			return
		}
		buf, err = readAllInto(buf[:0], io.LimitReader(rd, limit+1))
		if err != nil {
			return
		}
		b := append([]byte(nil), buf...)
		if int64(len(b)) > limit {
			s.oversize.Add(1)
			p.shut(closeOversize(s.opts.MaxPayload))
			return
		}
		if p.leaving() {
			continue // replaced or shut: its frames go nowhere
		}
		s.mu.RLock()
		s.routeLocked(p, parseFrame(b))
		s.mu.RUnlock()
	}
}

// peerLocked returns the connected peer id of group, or nil.
func (s *Server) peerLocked(group, id string) *peer { return s.groups[group][id] }

// handleSend serves POST /{group}/send?id=&t=: a message too large for the
// socket. Each recipient gets get:MSGID and fetches it from /receive.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, ok := s.admit(r.PathValue("group"), q.Get("t")); !ok {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.opts.MaxLargeBody)))
	if err != nil {
		http.Error(w, "Message too large", http.StatusRequestEntityTooLarge)
		return
	}
	code, msg := s.storeLarge(r.PathValue("group"), q.Get("id"), body)
	if code != http.StatusOK {
		http.Error(w, msg, code)
		return
	}
	io.WriteString(w, "ok")
}

// storeLarge stores body, POSTed by id of group, for its recipients and
// sends them get:MSGID. It returns the HTTP status and, unless 200, the
// error text.
func (s *Server) storeLarge(group, id string, body []byte) (int, string) {
	f := parseFrame(body)
	if f.kind == kindPing {
		f = frame{kind: kindBroadcast, payload: body} // "ping" over HTTP is a message
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.peerLocked(group, id)
	if from == nil {
		return http.StatusUnauthorized, "Unauthorized"
	}
	to := s.recipientsLocked(from, f)
	if len(to) == 0 {
		s.drops.Add(1)
		return http.StatusOK, ""
	}
	s.large.purgeLocked(now)
	if len(s.large.msgs) >= s.opts.MaxLarge || s.large.bytes+len(f.payload) > s.opts.MaxLargeBytes {
		return http.StatusServiceUnavailable, "Too many large messages waiting"
	}
	msgID := newMsgID()
	m := &largeMsg{group: group, data: f.payload, pending: map[string]bool{}, expires: now.Add(s.opts.LargeTTL)}
	for _, p := range to {
		m.pending[p.id] = true
	}
	s.large.msgs[msgID] = m
	s.large.bytes += len(m.data)
	notice := []byte("get:" + msgID)
	for _, p := range to {
		s.sendLocked(p, notice)
	}
	return http.StatusOK, ""
}

// handleReceive serves GET /{group}/receive?id=&msg=&t=: one recipient
// fetches a large message, once.
func (s *Server) handleReceive(w http.ResponseWriter, r *http.Request) {
	group, q := r.PathValue("group"), r.URL.Query()
	if _, ok := s.admit(group, q.Get("t")); !ok {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	if s.peerLocked(group, q.Get("id")) == nil {
		s.mu.Unlock()
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	data, ok := s.large.fetchLocked(now, group, q.Get("msg"), q.Get("id"))
	s.mu.Unlock()
	if !ok {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(data)
}

// readAllInto appends everything r yields to buf, growing it as needed.
func readAllInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
