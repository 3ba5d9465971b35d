package lan

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"berth/needs"
	"berth/pipes"
)

// Log streams: GET /v1/instances/{name}/logs asks the master that runs the
// instance (or, for an instance backing off, the master where it last ran)
// for its log file over the link, and copies the log.data frames that come
// back into the HTTP answer. The link's reader never waits for an HTTP
// client: each stream has a bounded queue, and a client that lets it fill up
// loses its stream.

// logQueue is how many chunks (each up to pipes.MaxLogChunk) may wait for a
// slow HTTP client before its stream is dropped.
const logQueue = 256

type logRequest struct {
	master *session
	ch     chan *logChunk
	once   sync.Once
	gone   chan struct{} // closed when the stream is dropped
}

type logChunk struct {
	data []byte
	eof  bool
	err  string
}

func (r *logRequest) drop() { r.once.Do(func() { close(r.gone) }) }

// logRequests are the log streams waiting for masters, by request id.
type logRequests struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]*logRequest
}

func (l *logRequests) open(m *session) (uint64, *logRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[uint64]*logRequest{}
	}
	l.next++
	r := &logRequest{master: m, ch: make(chan *logChunk, logQueue), gone: make(chan struct{})}
	l.m[l.next] = r
	return l.next, r
}

func (l *logRequests) get(id uint64) *logRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id]
}

func (l *logRequests) close(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, id)
}

// deliver queues a chunk for stream id of master m without blocking.
func (s *Server) deliver(m *session, id uint64, c *logChunk) {
	r := s.logs.get(id)
	if r == nil || r.master != m {
		return // finished or cancelled meanwhile, or not this master's
	}
	select {
	case r.ch <- c:
	default:
		r.drop() // the HTTP client is too slow
	}
}

// logData routes a log.data frame from a master to the HTTP request waiting for it.
func (s *Server) logData(m *session, msg *pipes.Msg) error {
	var d pipes.LogData
	if err := msg.Decode(&d); err != nil {
		return err
	}
	s.deliver(m, msg.ID, &logChunk{data: d.Data, eof: d.EOF, err: d.Error})
	return nil
}

// logError routes an error frame answering a logs request; false when the
// error answers nothing of ours.
func (s *Server) logError(m *session, msg *pipes.Msg) bool {
	r := s.logs.get(msg.ID)
	if msg.ID == 0 || r == nil || r.master != m {
		return false
	}
	s.deliver(m, msg.ID, &logChunk{err: msg.Error.Message})
	return true
}

// handleLogs serves GET /v1/instances/{name}/logs?tail=N&follow=1.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, _, err := needs.ParseInstanceName(name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req := pipes.Logs{Instance: name}
	q := r.URL.Query()
	for k := range q {
		if k != "tail" && k != "follow" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q (want tail, follow)", k))
			return
		}
	}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > pipes.MaxLogTail {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("tail: want a number of lines 0-%d, got %q", pipes.MaxLogTail, v))
			return
		}
		req.Tail = n
	}
	if v := q.Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("follow: want true or false, got %q", v))
			return
		}
		req.Follow = f
	}

	s.mu.Lock()
	in, ok := s.core.Insts[name]
	var m *session
	if ok {
		id := in.MasterID
		if id == "" {
			id = in.FailedOn // backing off: its last output is where it failed
		} else {
			req.Alloc = in.Alloc
		}
		m = s.masters[id]
	}
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("instance %q not found", name))
		return
	case m == nil:
		writeError(w, http.StatusConflict, fmt.Sprintf("instance %s is not on a connected master (state %s)", name, in.State))
		return
	}

	id, lr := s.logs.open(m)
	defer s.logs.close(id)
	msg, err := pipes.New(pipes.TypeLogs, &req)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	msg.ID = id
	m.sendMsg(msg)
	cancel := func() {
		c, _ := pipes.New(pipes.TypeLogsCancel, nil)
		c.ID = id
		m.sendMsg(c)
	}
	started := false
	flusher, _ := w.(http.Flusher)
	for {
		select {
		case c := <-lr.ch:
			switch {
			case c.err != "" && !started:
				writeError(w, http.StatusNotFound, c.err)
				return
			case c.err != "":
				fmt.Fprintf(w, "\n[berth: log stream ended: %s]\n", c.err)
				return
			}
			if !started {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.WriteHeader(http.StatusOK)
				started = true
			}
			if len(c.data) > 0 {
				if _, err := w.Write(c.data); err != nil {
					cancel()
					return
				}
			}
			if c.eof {
				return
			}
			if flusher != nil && len(lr.ch) == 0 {
				flusher.Flush()
			}
		case <-lr.gone:
			cancel()
			if !started {
				writeError(w, http.StatusServiceUnavailable, "log stream dropped: client too slow")
			}
			return
		case <-r.Context().Done():
			cancel()
			return
		case <-m.done:
			if !started {
				writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("master %s disconnected", m.info.Name))
			}
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// Logs copies an instance's log to w: the last tail lines (all of the
// current file when tail is 0) and, with follow, what is written next until
// ctx ends.
func (c *Client) Logs(ctx context.Context, instance string, tail int, follow bool, w io.Writer) error {
	q := url.Values{}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	if follow {
		q.Set("follow", "true")
	}
	path := "/v1/instances/" + url.PathEscape(instance) + "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil // the caller stopped following
	}
	return err
}
