package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	DefaultGrace       = 5 * time.Second // master.StopGrace
	DefaultDialTimeout = 2 * time.Second
)

// Config configures a Proxy. The zero value is usable.
type Config struct {
	// Strategy picks the backend of each connection (round-robin when nil).
	Strategy Strategy
	// Grace is how long the open connections of a removed backend may go on
	// before they are closed (DefaultGrace when zero).
	Grace time.Duration
	// GraceFrom, when set, is asked for the grace each time a backend is
	// removed, and Grace is used only when it returns 0 or less (a master
	// learns the lanmanager's stop grace from each link's welcome).
	GraceFrom func() time.Duration
	// DialTimeout bounds each dial to a backend (DefaultDialTimeout when
	// zero).
	DialTimeout time.Duration
	// EjectBase and EjectMax bound the ejection of a backend that refused a
	// connection (DefaultEjectBase, DefaultEjectMax when zero).
	EjectBase, EjectMax time.Duration
	// Logger gets ejections and accept errors (slog.Default() when nil).
	Logger *slog.Logger
	// Now is the clock of ejections (time.Now when nil).
	Now func() time.Time
	// ClientFirst says the protocol's client speaks first (HTTP,
	// WebSocket). Then, on Linux, a dial to a backend holds back the last
	// ACK of the TCP handshake (TCP_QUICKACK off before connect(2)) so that
	// it leaves with the client's first bytes: the backend accepts the
	// connection and reads its request in one wake-up instead of two
	// (HAProxy's option tcp-smart-connect). Leave it false where the
	// server speaks first (SMTP, SSH, MySQL): its backend would see the
	// connection only when the held ACK goes out on its own, about 200 ms
	// later.
	ClientFirst bool
}

// Proxy forwards each connection it accepts to one of a set of backends.
// All its methods may be called concurrently.
//
// Every goroutine it starts (accept loops, two per connection where the
// event loop is not used, one per draining backend) ends by Close, which
// returns once they have. The event loops are the package's: the first
// proxy to use them starts them, and the Close of the last stops them.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // the proxy's life; ends with Close
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	set    atomic.Pointer[[]*backend] // the running set, in Update's order
	strat  atomic.Pointer[Strategy]   // cfg.Strategy, or the last SetStrategy's

	mu        sync.Mutex // guards the fields below, and wg.Add from outside the proxy's goroutines
	closed    bool
	listeners map[net.Listener]struct{}
	links     map[*link]struct{}
	draining  map[*backend]struct{}
	pumping   bool  // registered with the pump's loops (Linux)
	pumpErr   error // why the loops could not start
}

// New returns a proxy with no backends and no listener; it starts
// nothing.
func New(cfg Config) *Proxy {
	if cfg.Strategy == nil {
		cfg.Strategy = NewRoundRobin()
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.EjectBase <= 0 {
		cfg.EjectBase = DefaultEjectBase
	}
	if cfg.EjectMax <= 0 {
		cfg.EjectMax = DefaultEjectMax
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, listeners: map[net.Listener]struct{}{},
		links: map[*link]struct{}{}, draining: map[*backend]struct{}{}}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	p.set.Store(&[]*backend{})
	p.strat.Store(&cfg.Strategy)
	return p
}

// SetStrategy makes s pick the backends of the connections that come
// from now on (round-robin when nil). The live connection counts are the
// proxy's, so a least-conn strategy set while connections are open counts
// them, and the stats given to SetStats are kept.
func (p *Proxy) SetStrategy(s Strategy) {
	if s == nil {
		s = NewRoundRobin()
	}
	p.strat.Store(&s)
}

// Strategy is the strategy that picks the backends now.
func (p *Proxy) Strategy() Strategy { return *p.strat.Load() }

// Listen opens a TCP listener on addr (the package's Listen) and serves it until Close; it
// returns the listener's address.
func (p *Proxy) Listen(addr string) (net.Addr, error) {
	ln, err := Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if !p.goOwned(func() { p.Serve(ln) }) {
		ln.Close()
		return nil, ErrClosed
	}
	return ln.Addr(), nil
}

// Serve accepts connections on ln and forwards them until ln fails or the
// proxy is closed; Close closes ln. It returns ErrClosed after Close, else
// the accept error.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	p.listeners[ln] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
		ln.Close()
	}()
	if p.serveLoop(ln) {
		return ErrClosed
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return ErrClosed
			}
			if !temporary(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			// EMFILE and the like: wait, as net/http does, so that a full
			// fd table is not a hot loop.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("mesh: accept", "addr", ln.Addr().String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return ErrClosed
			}
			continue
		}
		backoff = 0
		if !p.goOwned(func() { p.handle(c) }) {
			c.Close()
			return ErrClosed
		}
	}
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// goOwned runs f in a goroutine Close waits for, unless the proxy is
// closed.
func (p *Proxy) goOwned(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// Update replaces the set of backends at once. A backend whose ID and Addr
// are unchanged keeps its connections, counts, stats and ejection. A
// backend left out gets no new connection from now on; its open ones may
// go on for Config.Grace, then are closed. IDs must be unique and
// non-empty, and every Addr non-empty.
func (p *Proxy) Update(bs []Backend) error {
	seen := make(map[string]bool, len(bs))
	for _, b := range bs {
		if b.ID == "" || b.Addr == "" {
			return fmt.Errorf("update backends: %q at %q: want an id and an address", b.ID, b.Addr)
		}
		if seen[b.ID] {
			return fmt.Errorf("update backends: %q given twice", b.ID)
		}
		seen[b.ID] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	old := map[Backend]*backend{}
	for _, b := range *p.set.Load() {
		old[b.Backend] = b
	}
	next := make([]*backend, 0, len(bs))
	for _, b := range bs {
		if ob, ok := old[b]; ok {
			next = append(next, ob)
			delete(old, b)
		} else {
			next = append(next, newBackend(b))
		}
	}
	for _, b := range old {
		b.remove()
		p.draining[b] = struct{}{}
		p.wg.Add(1)
		go p.drain(b)
	}
	p.set.Store(&next)
	return nil
}

// grace is the grace of a backend removed now.
func (p *Proxy) grace() time.Duration {
	if p.cfg.GraceFrom != nil {
		if d := p.cfg.GraceFrom(); d > 0 {
			return d
		}
	}
	return p.cfg.Grace
}

// drain waits for the last connection of a removed backend to end, or for
// its grace to, and then closes what is left.
func (p *Proxy) drain(b *backend) {
	defer p.wg.Done()
	t := time.NewTimer(p.grace())
	defer t.Stop()
	select {
	case <-b.drained:
	case <-t.C:
	case <-p.ctx.Done():
	}
	links := b.end()
	for _, l := range links {
		l.close()
	}
	if len(links) > 0 {
		p.log.Info("mesh: grace over", "backend", b.ID, "closed", len(links))
	}
	p.mu.Lock()
	delete(p.draining, b)
	p.mu.Unlock()
}

// SetStats records the latest heartbeat figures of the backend id, for the
// resource strategy. It reports whether id is in the set.
func (p *Proxy) SetStats(id string, s Stats) bool {
	for _, b := range *p.set.Load() {
		if b.ID == id {
			b.stats.Store(&s)
			return true
		}
	}
	return false
}

// Backends returns the state of every backend: the set in Update's order,
// then those draining.
func (p *Proxy) Backends() []BackendStatus {
	var out []BackendStatus
	for _, b := range *p.set.Load() {
		out = append(out, b.status())
	}
	p.mu.Lock()
	draining := make([]*backend, 0, len(p.draining))
	for b := range p.draining {
		draining = append(draining, b)
	}
	p.mu.Unlock()
	for _, b := range draining {
		out = append(out, b.status())
	}
	return out
}

// Close stops accepting, closes every connection and listener, and waits
// for every goroutine of the proxy. It may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	p.cancel(ErrClosed)
	var errs []error
	for ln := range p.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	if p.pumping {
		releasePumps()
	}
	return errors.Join(errs...)
}
