package lan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"berth/internal/httplimit"
	"berth/lifecycle"
	"berth/pipes"
)

// Config configures a Server.
type Config struct {
	// Listen is the HTTP address, e.g. "127.0.0.1:23552".
	Listen string
	// DataDir holds lan.db.
	DataDir string
	// Token, when set, is required as a bearer token on every call. Empty
	// means no token: the lanmanager commands always set one unless told
	// --insecure-no-token (see LoadOrCreateToken).
	Token string
	// AllowedHosts are more names that the Host header may carry besides
	// localhost, the listen host, the machine's host name and its IP
	// addresses (see guard).
	AllowedHosts []string
	// MasterTTL is how long a master may go unheard before it is lost and
	// its instances are placed elsewhere (default 5 s). Masters are told to
	// ping every MasterTTL/5 (at least 50 ms); the lanmanager pings a master
	// that has been quiet for that long too, so any master that answers
	// pings stays alive. A master whose link dropped is lost MasterTTL after
	// it was last heard; after a restart of the lanmanager, the masters that
	// held instances have MasterTTL from start-up to come back.
	MasterTTL time.Duration
	// Clock returns the current time (default time.Now). Liveness and
	// back-off are measured with it. Its times must carry a monotonic
	// reading, as time.Now's do, so that a jump of the wall clock neither
	// fires a TTL early nor delays it.
	Clock func() time.Time
	// StartDeadline bounds the reachability check of a new child (default 30 s).
	StartDeadline time.Duration
	// MinUptime is how long a child without ports must stay up to be
	// approved, unless it says ready first (default 1 s).
	MinUptime time.Duration
	// BidWindow is how long an offer waits for bids (default 300 ms).
	BidWindow time.Duration
	// StopGrace is the SIGTERM-to-SIGKILL grace masters are told to use (default 5 s, at most 24 h).
	StopGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// ReadHeaderTimeout bounds how long a connection may take to send a
	// request's headers (default 5 s); one that sends nothing is closed
	// then.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long between
	// requests (default 60 s).
	IdleTimeout time.Duration
	// BodyTimeout bounds how long a request's body may take to arrive
	// after its headers (default httplimit.BodyTimeout, 30 s).
	BodyTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (default 64 KiB); larger
	// ones are answered 431.
	MaxHeaderBytes int
	// MaxConns bounds the connections open at once, WebSockets (masters'
	// links, event and log streams) included (default 1024). Further
	// clients wait in the kernel's backlog until one closes.
	MaxConns int
	// AutoRebalance rebalances, by itself, every need whose instances have
	// spread unevenly (one master holding two or more than another that
	// may take them) for RebalanceAfter (default 1 minute); see
	// rebalance.go.
	AutoRebalance  bool
	RebalanceAfter time.Duration
	// IPC is the IPC hub to hand children (BERTH_IPC*, with a token of
	// their own) and to report on GET /v1/ipc; nil for none. The caller
	// opens and closes it (OpenIPC): it outlives the Server's other parts.
	IPC *IPCHub
	// Gateway is the WebSocket gateway to attach to this server (it reads
	// the needs and instances from it) and whose token the instances of
	// gateway needs get; nil for none. The caller opens and closes it.
	Gateway *Gateway
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MasterTTL <= 0 {
		c.MasterTTL = 5 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.StartDeadline <= 0 {
		c.StartDeadline = 30 * time.Second
	}
	if c.MinUptime <= 0 {
		c.MinUptime = time.Second
	}
	if c.BidWindow <= 0 {
		c.BidWindow = 300 * time.Millisecond
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 5 * time.Second
	}
	c.StopGrace = min(c.StopGrace, 24*time.Hour) // pipes.MaxGraceMS: masters refuse more
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = httplimit.BodyTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
	if c.RebalanceAfter <= 0 {
		c.RebalanceAfter = time.Minute
	}
}

// refusedLogInterval is how often the log may say, per client, that a
// request or hello was refused.
const refusedLogInterval = 10 * time.Second

// DefaultListen is the lanmanager's default address.
const DefaultListen = "127.0.0.1:23552"

// Server is the lanmanager: it holds the needs, places their instances on
// masters, approves them and serves the HTTP API. All methods are safe for
// concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *Store
	hub   *hub
	hosts *hostGuard
	// refusals rate-limits the log lines of refused requests and hellos.
	refusals *rateLog

	ln   net.Listener
	http *http.Server

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // owns placer, committer, approvals, link sessions
	wake   chan struct{}
	// commits wakes the committer (lan/commit.go).
	commits chan struct{}
	// dispatching holds a token per master's frame being dispatched
	// (dispatchSlots).
	dispatching chan struct{}

	// writeMu is held by whoever writes lan.db: the committer, and API
	// calls that persist before they answer. Taken before mu.
	writeMu sync.Mutex
	// apiWriters counts the API calls in persist, waiting for writeMu or
	// holding it: the committer leaves the pending batch to them.
	apiWriters atomic.Int32
	// leftToAPI counts the committer's wake-ups that found an API call in
	// persist, and left the batch to it.
	leftToAPI atomic.Int64

	// view is what the read API answers from (lan/view.go).
	view *view
	// svc pushes the running set to the masters that asked (lan/services.go).
	svc *servicesPush
	// loads passes resource figures between masters (lan/loads.go);
	// loadsDropped counts the loads frames over a master's budget.
	loads        *loadBook
	loadsDropped atomic.Int64
	// committed tells the masters' writers which batches are written.
	committed commitGate
	// writers write the masters' links (lan/writers.go).
	writers *linkWriters
	// writeFailures counts the batch writes that failed (and were kept).
	writeFailures atomic.Int64

	bmu     sync.Mutex // Protects following; taken after mu, never before.
	pending batch      // applied effects waiting for the committer
	gen     uint64     // the number of the pending batch

	mu sync.Mutex // Protects following.
	// core holds the needs, instances and drains, and applies every event
	// that changes them (package lifecycle); fx collects its effects until
	// applyLocked hands them on.
	core *lifecycle.State
	fx   lifecycle.Effects
	lead []Event // events to go first in the next batch (publishStepLocked)
	// meshSent is the last mesh frame sent on a change.
	meshSent *pipes.Mesh
	masters  map[string]*session   // connected masters by id
	gone     map[string]masterGone // masters seen, now disconnected, by id
	rounds   map[string]*round     // open offer rounds by instance
	// livenessRan is when a placer pass last checked the masters'
	// liveness (see closeRounds).
	livenessRan time.Time
	retryAt     map[string]time.Time // instance → earliest next offer after a round without bids
	// uptimeAt holds the allocations without ports that wait out MinUptime,
	// and when (time.Now, not Config.Clock) they are due.
	uptimeAt map[string]time.Time
	round    uint64
	closed   bool

	logs logRequests // log streams waiting for masters (lan/logs.go)

	appr   approvals   // approvals under way (lan/approve.go); its maps guarded by mu
	budget offerBudget // offers the current placer pass may make (lan/placer.go); guarded by mu
	reb    rebalancer  // rebalance requests and moves (lan/rebalance.go); its maps guarded by mu
}

// masterGone is a disconnected master whose instances stay placed until it
// is lost: MasterTTL after since.
type masterGone struct {
	name string
	// since is when the master was last heard (heard) or, for masters known
	// only from the records at start-up, when the lanmanager started. It
	// comes from Config.Clock and keeps its monotonic reading.
	since time.Time
	heard bool
	// address and boot are those of its last link (heard only), for the
	// identity check.
	address, boot string
}

// ErrClosed is returned by operations on a closed Server.
var ErrClosed = errors.New("lanmanager closed")

// Open loads the store, listens and starts serving.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("open lanmanager: data directory not set")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open lanmanager: %w", err)
	}
	st, err := OpenStore(filepath.Join(cfg.DataDir, "lan.db"))
	if err != nil {
		return nil, err
	}
	for _, r := range st.Recovered() {
		cfg.Logger.Warn("store: " + r)
	}
	var drained map[string]time.Time
	ns, is, err := st.Load()
	if err == nil {
		drained, err = st.LoadDrained()
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open lanmanager: load: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, store: st, hub: newHub(), hosts: newHostGuard(cfg.Listen, cfg.AllowedHosts),
		refusals: newRateLog(refusedLogInterval),
		wake:     make(chan struct{}, 1), commits: make(chan struct{}, 1), dispatching: make(chan struct{}, dispatchSlots()),
		core: lifecycle.New(lifecycle.Config{StopGrace: cfg.StopGrace, StartDeadline: cfg.StartDeadline, RetryAfter: noBidRetry},
			ns, is, drained),
		view:    newView(ns, is),
		svc:     newServicesPush(),
		loads:   newLoadBook(),
		masters: map[string]*session{}, gone: map[string]masterGone{},
		rounds: map[string]*round{}, retryAt: map[string]time.Time{}, uptimeAt: map[string]time.Time{},
	}
	s.meshSent = s.meshLocked()
	s.writers = newLinkWriters()
	s.committed.resume = s.writers.schedule
	// Masters that held instances before a restart get the TTL, from now,
	// to come back and re-announce them.
	now := s.now()
	for _, in := range is {
		if in.State.Placed() && in.MasterID != "" {
			s.gone[in.MasterID] = masterGone{name: in.Master, since: now}
		}
		if h := in.Handoff; h != nil {
			s.gone[h.MasterID] = masterGone{name: h.Master, since: now}
		}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open lanmanager: %w", err)
	}
	s.ln = httplimit.Limit(ln, cfg.MaxConns, cfg.Logger)
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.appr = newApprovals()
	s.reb = newRebalancer()
	s.http = &http.Server{Handler: httplimit.BoundBodies(s.Handler(), cfg.BodyTimeout), ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}
	s.writers.start(linkWriterCount())
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.committer()
	}()
	s.wg.Go(s.pushServices)
	s.wg.Go(s.relayLoads)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.placer()
	}()
	if cfg.Gateway != nil {
		cfg.Gateway.Attach(s)
	}
	s.log.Info("lanmanager listening", "addr", ln.Addr().String(), "data", cfg.DataDir, "needs", len(ns), "instances", len(is),
		"draining", len(drained), "master_ttl", cfg.MasterTTL)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, closes every master link and the store. It does not
// stop any child: masters keep them until told otherwise. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sessions := make([]*session, 0, len(s.masters))
	for _, m := range s.masters {
		sessions = append(sessions, m)
	}
	s.mu.Unlock()
	s.cancel(ErrClosed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// A client kept a connection open without a request, or a request
		// did not finish: it has had its time; closing it is not a
		// failure of the shutdown.
		s.log.Warn("shutdown: closing connections still open after 5s")
		err = s.http.Close()
	}
	for _, m := range sessions {
		m.close()
	}
	s.writers.stop()
	s.hub.closeAll()
	s.wg.Wait()
	if err := s.flush(); err != nil { // what the last events changed
		s.log.Error("persist instances at close: the last changes are lost", "err", err)
	}
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// track registers a goroutine serving a hijacked connection with s.wg, so
// that Close waits for it; it returns false once Close has begun.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// now reads the configured clock.
func (s *Server) now() time.Time { return s.cfg.Clock() }

func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
