package ipchub

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero fields of Options.
const (
	DefaultMaxPayload    = 16384
	DefaultQueueLen      = 256
	DefaultWriteTimeout  = 10 * time.Second
	DefaultLargeTTL      = 60 * time.Second
	DefaultMaxLarge      = 1024
	DefaultMaxLargeBytes = 64 << 20
	DefaultMaxLargeBody  = 16 << 20
	// CloseGrace is how long Close waits for peers to complete the close
	// handshake before it cuts their connections.
	CloseGrace = 2 * time.Second
)

// Options configures a Server. The zero value is usable: no token and the
// defaults above.
type Options struct {
	// Token, when not empty, must be the t parameter of every request, or
	// a ChildToken made from it for the request's group. When empty, any
	// t is accepted (AceBase sends "undefined").
	Token string
	// MaxPayload is the largest text frame a peer may send, announced in
	// the welcome frame.
	MaxPayload int
	// QueueLen is the number of frames a peer may have waiting to be
	// written; one more disconnects it as a slow consumer.
	QueueLen int
	// WriteTimeout bounds the write of one frame; a peer that does not
	// take it in time is disconnected as a slow consumer.
	WriteTimeout time.Duration
	// LargeTTL is how long a POSTed message waits to be fetched.
	LargeTTL time.Duration
	// MaxLarge and MaxLargeBytes bound the messages waiting to be fetched;
	// a POST beyond them gets 503. MaxLargeBody bounds one POST (413).
	MaxLarge, MaxLargeBytes, MaxLargeBody int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for large-message expiry; it defaults to time.Now.
	Now func() time.Time
}

// Counters are the hub's totals since NewServer.
type Counters struct {
	Messages        int64 `json:"messages"`         // frames queued to a peer (pong and notices included)
	Bytes           int64 `json:"bytes"`            // bytes of those frames
	Drops           int64 `json:"drops"`            // frames not delivered: unknown recipient, peer leaving or full queue, malformed to:
	SlowDisconnects int64 `json:"slow_disconnects"` // peers disconnected because they did not keep up
	Oversize        int64 `json:"oversize"`         // peers disconnected for a frame over MaxPayload
}

// Peer describes one connected peer.
type Peer struct {
	ID     string
	Remote string
	Since  time.Time
	// Who is what the peer's child token names (see ChildToken), or "".
	Who string
}

// Group is the peers of one group, sorted by id.
type Group struct {
	Name  string
	Peers []Peer
}

// Server is an IPC hub. It serves the acebase-ipc-server protocol (see the
// package doc) through ServeHTTP. All methods are safe for concurrent use.
type Server struct {
	opts    Options
	welcome []byte // the frame every newcomer gets first
	log     *slog.Logger
	mux     *http.ServeMux
	ctx     context.Context // ends when Close cuts the connections
	cancel  context.CancelFunc
	wg      sync.WaitGroup // handlers and writers

	messages, bytes, drops, slow, oversize atomic.Int64

	mu     sync.RWMutex // Protects following.
	closed bool
	groups map[string]map[string]*peer // group -> id -> peer
	large  largeStore
}

// NewServer returns a hub with opts; it starts nothing until a request
// comes.
func NewServer(opts Options) *Server {
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.LargeTTL <= 0 {
		opts.LargeTTL = DefaultLargeTTL
	}
	if opts.MaxLarge <= 0 {
		opts.MaxLarge = DefaultMaxLarge
	}
	if opts.MaxLargeBytes <= 0 {
		opts.MaxLargeBytes = DefaultMaxLargeBytes
	}
	if opts.MaxLargeBody <= 0 {
		opts.MaxLargeBody = DefaultMaxLargeBody
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, groups: map[string]map[string]*peer{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.large.msgs = map[string]*largeMsg{}
	s.welcome = fmt.Appendf(nil, `welcome:{"maxPayload":%d}`, opts.MaxPayload)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{group}/connect", s.handleConnect)
	s.mux.HandleFunc("POST /{group}/send", s.handleSend)
	s.mux.HandleFunc("GET /{group}/receive", s.handleReceive)
	return s
}

// ServeHTTP serves the hub's paths at the root.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// track registers a handler with the server, unless it is closed.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close disconnects every peer with "going away", waits up to CloseGrace
// for the close handshakes, then cuts what is left and waits for every
// goroutine of the hub. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for _, g := range s.groups {
		for _, p := range g {
			p.shut(closeGoingAway)
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(CloseGrace):
	}
	s.cancel()
	<-done
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Counters {
	return Counters{
		Messages:        s.messages.Load(),
		Bytes:           s.bytes.Load(),
		Drops:           s.drops.Load(),
		SlowDisconnects: s.slow.Load(),
		Oversize:        s.oversize.Load(),
	}
}

// Snapshot returns the groups and their peers, sorted by name and id.
// Peers being disconnected are left out.
func (s *Server) Snapshot() []Group {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Group, 0, len(s.groups))
	for name, g := range s.groups {
		grp := Group{Name: name}
		for _, p := range g {
			if p.leaving() {
				continue
			}
			grp.Peers = append(grp.Peers, Peer{ID: p.id, Remote: p.remote, Since: p.since, Who: p.who})
		}
		if len(grp.Peers) == 0 {
			continue
		}
		sort.Slice(grp.Peers, func(i, j int) bool { return grp.Peers[i].ID < grp.Peers[j].ID })
		out = append(out, grp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
