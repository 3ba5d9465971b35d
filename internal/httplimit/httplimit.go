// Package httplimit holds the limits that every HTTP server berth opens
// applies to its clients: the lanmanager's API, the IPC hub, the
// lanmanager's and the masters' WebSocket gateways. A client that never
// sends its headers, one that keeps a connection idle, one that sends
// huge headers, and many clients at once each meet a bound.
package httplimit

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of every server.
const (
	// ReadHeaderTimeout closes a connection that has not sent a request's
	// headers in time.
	ReadHeaderTimeout = 5 * time.Second
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout = 60 * time.Second
	// MaxHeaderBytes answers larger headers with 431.
	MaxHeaderBytes = 64 << 10
	// BodyTimeout bounds how long a request's body may take to arrive,
	// counted from its headers: a client that announces a body and sends
	// none would otherwise hold its connection for ever, even after the
	// answer (the server reads what is left of the body before it reuses
	// or closes the connection).
	BodyTimeout = 30 * time.Second
)

// Server is an http.Server for h with the default limits.
func Server(h http.Handler) *http.Server {
	return &http.Server{Handler: BoundBodies(h, BodyTimeout), ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout,
		MaxHeaderBytes: MaxHeaderBytes}
}

// BoundBodies gives every request that has a body d to deliver it: the
// connection's read deadline is set to d after the headers, for the
// handler's reads and for the server's own read of what the handler left.
// Requests without a body, WebSocket upgrades among them, keep their
// connection's deadlines (a WebSocket lives on without one).
func BoundBodies(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			// An error means the connection cannot take a deadline
			// (not a net.Conn underneath): nothing to bound then.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		h.ServeHTTP(w, r)
	})
}

// Listener accepts at most max connections at a time: once that many are
// open, Accept waits until one closes, and further clients wait in the
// kernel's backlog. Connections handed to a WebSocket count until the
// WebSocket closes. Safe for concurrent use.
type Listener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
	log   *slog.Logger

	open     atomic.Int64 // connections open now
	peak     atomic.Int64 // most connections ever open at once
	fullLine atomic.Int64 // when the last "cap reached" line was logged, unix nanoseconds
}

// FullEvery is how often at most a Listener logs that its cap is reached.
const FullEvery = time.Minute

// Limit wraps ln; max must be positive. log, if not nil, gets a WARN line
// (at most every FullEvery) when the cap is reached and clients wait.
func Limit(ln net.Listener, max int, log *slog.Logger) *Listener {
	return &Listener{Listener: ln, slots: make(chan struct{}, max), done: make(chan struct{}), log: log}
}

// Accept waits for a free slot, then for a connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.full()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	n := l.open.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &conn{Conn: c, l: l}, nil
}

// full says, at most every FullEvery, that the cap is reached.
func (l *Listener) full() {
	if l.log == nil {
		return
	}
	now := time.Now().UnixNano()
	last := l.fullLine.Load()
	if last != 0 && now-last < int64(FullEvery) || !l.fullLine.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("connection cap reached: new clients wait in the backlog until a connection closes",
		"addr", l.Addr().String(), "cap", cap(l.slots), "next_line_after", FullEvery)
}

// Close stops accepting; open connections keep their slots until they
// close. Idempotent.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Open is the number of connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Peak is the most connections ever open at once.
func (l *Listener) Peak() int { return int(l.peak.Load()) }

// conn gives its slot back when it is first closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}
