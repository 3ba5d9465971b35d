package mesh

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one running instance the proxy may forward to.
type Backend struct {
	ID   string // unique within a set, e.g. the instance name "web.2"
	Addr string // host:port to dial
}

// BackendStatus is what Proxy.Backends reports of one backend.
type BackendStatus struct {
	Backend
	Conns        int64     // open connections through the proxy
	EjectedUntil time.Time // the end of its last ejection (in the past once over), or zero
	Draining     bool      // removed by Update; open connections are in their grace period
}

// backend is the proxy's state of one Backend. A removed backend stays
// until its last connection ends or its grace period does.
type backend struct {
	Backend
	ap    netip.AddrPort        // Addr parsed, when it is an IP address and a port
	conns atomic.Int64          // connections picked for it and not yet ended
	stats atomic.Pointer[Stats] // latest SetStats; never modified once stored

	mu      sync.Mutex // guards the fields below
	ej      ejection
	open    map[*link]struct{} // its connections being copied
	removed bool               // Update took it out: no new connections
	over    bool               // its grace has ended: no connection may join
	drained chan struct{}      // closed once removed and open is empty
}

func newBackend(b Backend) *backend {
	ap, _ := netip.ParseAddrPort(b.Addr) // a host name stays zero: dialled by name
	return &backend{Backend: b, ap: ap, open: map[*link]struct{}{}, drained: make(chan struct{})}
}

// candidate reports whether b may take a new connection at now, and
// whether it is out only for being ejected.
func (b *backend) candidate(now time.Time) (ok, ejected bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed {
		return false, false
	}
	if b.ej.ejected(now) {
		return false, true
	}
	return true, false
}

// join adds l to b's open connections, unless b's grace has ended.
func (b *backend) join(l *link) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return false
	}
	b.open[l] = struct{}{}
	return true
}

// leave takes l out of b's open connections.
func (b *backend) leave(l *link) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.open, l)
	b.drainedLocked()
}

// remove marks b removed: no new connections.
func (b *backend) remove() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removed = true
	b.drainedLocked()
}

func (b *backend) drainedLocked() {
	if b.removed && len(b.open) == 0 && !b.over {
		select {
		case <-b.drained:
		default:
			close(b.drained)
		}
	}
}

// end closes b to new connections and returns those still open.
func (b *backend) end() []*link {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.over = true
	links := make([]*link, 0, len(b.open))
	for l := range b.open {
		links = append(links, l)
	}
	return links
}

func (b *backend) status() BackendStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BackendStatus{Backend: b.Backend, Conns: b.conns.Load(), EjectedUntil: b.ej.until, Draining: b.removed}
}
