package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Defaults for the zero fields of Options.
const (
	DefaultMaxMessage      = 64 << 10
	DefaultMaxPush         = 1 << 20
	DefaultMaxRate         = 100
	DefaultMaxConnsPerNeed = 10000
	// DefaultMaxConns bounds the connections a gateway's listener holds
	// open at once, WebSockets included (its owner applies it:
	// internal/httplimit); above what one need may hold.
	DefaultMaxConns       = 16384
	DefaultMaxInFlight    = 16
	DefaultPingEvery      = 30 * time.Second
	DefaultPongTimeout    = 10 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxReply       = 16 << 20
	// goneKept bounds the ids remembered as gone (410 rather than 404).
	goneKept = 100000
)

// Options configures a Server.
type Options struct {
	// Pick returns the address (host:port) of the http port of a running
	// instance of need, or an error saying why there is none.
	Pick func(need string) (string, error)
	// Published reports whether clients may connect to need; nil: any.
	Published func(need string) bool
	// Token guards the management paths (Authorization: Bearer); empty
	// turns them off (403).
	Token string
	// MaxMessage bounds a client's message (1009 beyond); MaxPush a push.
	MaxMessage, MaxPush int
	// MaxRate is the messages per second one connection may send, with a
	// burst of as many (1008 beyond).
	MaxRate float64
	// MaxConnsPerNeed bounds the sockets of one need (1013 beyond).
	MaxConnsPerNeed int
	// MaxInFlight bounds one connection's messages being answered; the
	// next waits (and so does reading its socket).
	MaxInFlight int
	// PingEvery pings a socket silent that long; PongTimeout closes it
	// (1001) when no pong comes in time.
	PingEvery, PongTimeout time.Duration
	// RequestTimeout bounds an instance's answer up to its headers;
	// MaxReply bounds an answer that is not streamed (502 beyond).
	RequestTimeout time.Duration
	MaxReply       int
	// Client makes the requests to the instances (default: its own).
	Client *http.Client
	Logger *slog.Logger
}

// ConnInfo is one connection, as GET /@connections lists it.
type ConnInfo struct {
	ID       string    `json:"id"`
	Need     string    `json:"need"`
	Remote   string    `json:"remote"`
	Since    time.Time `json:"since"`
	Messages int64     `json:"messages"`
}

// Server is a gateway; see the package doc.
type Server struct {
	opts      Options
	ownClient bool // opts.Client is the gateway's own: Close closes its idle connections
	log       *slog.Logger
	mux       *http.ServeMux
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu      sync.Mutex // Protects following.
	closed  bool
	conns   map[string]*conn
	perNeed map[string]int
	gone    map[string]bool
	goneQ   []string // gone ids in the order they left, to forget the oldest
}

// NewServer returns a gateway with opts; Pick is required.
func NewServer(opts Options) (*Server, error) {
	if opts.Pick == nil {
		return nil, errors.New("gateway: Options.Pick is required")
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	if opts.MaxPush <= 0 {
		opts.MaxPush = DefaultMaxPush
	}
	if opts.MaxRate <= 0 {
		opts.MaxRate = DefaultMaxRate
	}
	if opts.MaxConnsPerNeed <= 0 {
		opts.MaxConnsPerNeed = DefaultMaxConnsPerNeed
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.PingEvery <= 0 {
		opts.PingEvery = DefaultPingEvery
	}
	if opts.PongTimeout <= 0 {
		opts.PongTimeout = DefaultPongTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxReply <= 0 {
		opts.MaxReply = DefaultMaxReply
	}
	own := opts.Client == nil
	if own {
		opts.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 60 * time.Second,
			ResponseHeaderTimeout: opts.RequestTimeout}}
	}
	s := &Server{opts: opts, ownClient: own, log: opts.Logger, conns: map[string]*conn{}, perNeed: map[string]int{}, gone: map[string]bool{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /@connections", s.manage(s.handleList))
	s.mux.HandleFunc("POST /@connections/{id}", s.manage(s.handlePush))
	s.mux.HandleFunc("DELETE /@connections/{id}", s.manage(s.handleClose))
	s.mux.HandleFunc("GET /{need}", s.handleConnect)
	return s, nil
}

// ServeHTTP serves the gateway's paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close closes every socket (1001) and waits for every goroutine of the
// gateway. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup // the close handshakes, at once
	for _, c := range conns {
		wg.Go(func() { c.close(websocket.StatusGoingAway, "gateway closing") })
	}
	wg.Wait()
	s.cancel()
	s.wg.Wait()
	if s.ownClient {
		s.opts.Client.CloseIdleConnections()
	}
	return nil
}

// Connections lists the connections, oldest first.
func (s *Server) Connections() []ConnInfo {
	s.mu.Lock()
	out := make([]ConnInfo, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, ConnInfo{ID: c.id, Need: c.need, Remote: c.remote, Since: c.since.UTC(), Messages: c.messages.Load()})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		return out[i].Since.Before(out[j].Since) || out[i].Since.Equal(out[j].Since) && out[i].ID < out[j].ID
	})
	return out
}

// register adds c unless the gateway is closed or its need is full.
func (s *Server) register(c *conn) (ok bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, "gateway closing"
	}
	if s.perNeed[c.need] >= s.opts.MaxConnsPerNeed {
		return false, fmt.Sprintf("too many connections to %s (%d)", c.need, s.opts.MaxConnsPerNeed)
	}
	s.conns[c.id] = c
	s.perNeed[c.need]++
	s.wg.Add(1)
	return true, ""
}

// unregister removes c and remembers its id as gone.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c.id)
	if s.perNeed[c.need]--; s.perNeed[c.need] <= 0 {
		delete(s.perNeed, c.need)
	}
	s.gone[c.id] = true
	s.goneQ = append(s.goneQ, c.id)
	if len(s.goneQ) > goneKept {
		delete(s.gone, s.goneQ[0])
		s.goneQ = s.goneQ[1:]
	}
}

// lookup returns the connection id, or the HTTP status that says why not:
// 404 never seen, 410 gone.
func (s *Server) lookup(id string) (*conn, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[id]; ok {
		return c, http.StatusOK
	}
	if s.gone[id] {
		return nil, http.StatusGone
	}
	return nil, http.StatusNotFound
}

// manage guards a management path with the token.
func (s *Server) manage(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Token == "" {
			http.Error(w, "the gateway's management API is off (no token)", http.StatusForbidden)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="berth gateway"`)
			http.Error(w, "missing or wrong bearer token (the gateway token: BERTH_GATEWAY_TOKEN in a gateway need's instances)", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// newID returns a UUID version 4.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// postbackURL is where a service pushes to connection id: the gateway as
// the client reached it.
func postbackURL(r *http.Request, id string) string {
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		proto = p
	}
	return proto + "://" + r.Host + "/@connections/" + id
}
