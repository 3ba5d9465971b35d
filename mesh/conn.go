package mesh

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// attempts is how many backends a connection is offered to: a backend
// that refuses is skipped and the next one tried, once.
const attempts = 2

// link is one proxied connection: the client's and the backend's sockets.
type link struct {
	client, upstream net.Conn
	halves           atomic.Int32 // directions that reached their end of stream

	mu     sync.Mutex
	closed bool
	stop   func() // set once the pump owns the sockets: asks it to close them
}

// close closes both sockets, or has the pump close them; the copies in
// flight return. Idempotent.
func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	stop := l.stop
	l.mu.Unlock()
	if stop != nil {
		stop()
		return
	}
	l.client.Close()
	l.upstream.Close()
}

// handle forwards the client's connection c to a backend, and copies both
// ways until both sides are done.
func (p *Proxy) handle(c net.Conn) {
	var ip netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr()
	}
	var tried []*backend
	for range attempts {
		b := p.pick(ip, tried)
		if b == nil {
			break
		}
		tried = append(tried, b)
		b.conns.Add(1)
		up, err := p.dial(b)
		if err != nil {
			b.conns.Add(-1)
			continue
		}
		l := &link{client: c, upstream: up}
		if !p.join(b, l) {
			up.Close()
			b.conns.Add(-1)
			continue
		}
		p.forward(b, l)
		return
	}
	c.Close()
}

// pick returns the backend for a new connection from ip, not one of
// skip, or nil when there is none. Ejected backends are left out unless
// every backend is ejected: then they are all offered (a refusal costs a
// dial; refusing every client costs more).
func (p *Proxy) pick(ip netip.Addr, skip []*backend) *backend {
	set := *p.set.Load()
	now := p.cfg.Now()
	cands := make([]Candidate, 0, len(set))
	back := make([]*backend, 0, len(set))
	var ejected []*backend
	for _, b := range set {
		if slices.Contains(skip, b) {
			continue
		}
		ok, out := b.candidate(now)
		if out {
			ejected = append(ejected, b)
		}
		if ok {
			back = append(back, b)
		}
	}
	if len(back) == 0 {
		back = ejected
	}
	for _, b := range back {
		cands = append(cands, Candidate{ID: b.ID, Conns: b.conns.Load(), Stats: b.stats.Load()})
	}
	i := p.Strategy().Pick(cands, ip)
	if i < 0 || i >= len(back) {
		return nil
	}
	return back[i]
}

// dial connects to b, and ejects b when it cannot.
func (p *Proxy) dial(b *backend) (net.Conn, error) {
	d := net.Dialer{Timeout: p.cfg.DialTimeout, KeepAliveConfig: backendKeepAlive}
	if p.cfg.ClientFirst {
		d.Control = holdHandshakeACK
	}
	up, err := d.DialContext(p.ctx, "tcp", b.Addr)
	if err != nil {
		if p.ctx.Err() != nil {
			return nil, err
		}
		p.refused(b, err)
		return nil, err
	}
	p.reached(b)
	return up, nil
}

// refused ejects b after a failed dial.
func (p *Proxy) refused(b *backend, err error) {
	b.mu.Lock()
	d := b.ej.refused(p.cfg.Now(), p.cfg.EjectBase, p.cfg.EjectMax)
	b.mu.Unlock()
	p.log.Warn("mesh: backend ejected", "backend", b.ID, "addr", b.Addr, "for", d, "err", err)
}

// reached resets b's ejection after a dial that worked.
func (p *Proxy) reached(b *backend) {
	b.mu.Lock()
	b.ej.succeeded()
	b.mu.Unlock()
}

// join registers l with the proxy and with b, unless the proxy is closed
// or b's grace is over.
func (p *Proxy) join(b *backend, l *link) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	if !b.join(l) {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		return false
	}
	return true
}

func (p *Proxy) leave(b *backend, l *link) {
	l.close()
	b.leave(l)
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// closeWriter is the half-close of *net.TCPConn (and *net.UnixConn).
type closeWriter interface{ CloseWrite() error }

// Copy buffers. Each direction reads into a small buffer; a read that
// fills it (a bulk transfer) borrows a large one until reads fit in the
// small one again. An idle connection holds two small buffers, one per
// blocked read, or a large one after a bulk transfer.
const (
	smallBuf = 4 << 10
	largeBuf = 32 << 10
)

var (
	smallPool = sync.Pool{New: func() any { return new([smallBuf]byte) }}
	largePool = sync.Pool{New: func() any { return new([largeBuf]byte) }}
)

// copyAndLeave copies both ways in this goroutine and another, then
// takes l out of the proxy's and b's books.
func (p *Proxy) copyAndLeave(b *backend, l *link) {
	p.copyBoth(l)
	p.leave(b, l)
	b.conns.Add(-1)
}

// copyBoth copies client to backend in this goroutine and backend to
// client in another, passing each end of stream on as a half-close, until
// both directions have ended; an error in either closes both sockets.
//
// The copy is read(2) and write(2) through pooled buffers, not io.Copy:
// between two *net.TCPConn io.Copy splices (socket to pipe, pipe to
// socket), which the profile of bench/mesh showed costing more CPU than a
// read and a write for the small exchanges of request and answer, and
// which holds a pipe (two fds) per direction for the connection's life.
func (p *Proxy) copyBoth(l *link) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.copyHalf(l, l.client, l.upstream, nil)
	}()
	var sent func()
	if p.cfg.ClientFirst {
		var once sync.Once
		sent = func() { once.Do(func() { quickACK(l.upstream) }) }
	}
	p.copyHalf(l, l.upstream, l.client, sent)
	wg.Wait()
	l.close()
}

// copyHalf copies src to dst. At src's end of stream it half-closes dst,
// unless the other direction has ended already: then both are about to be
// closed, and close(2) sends the FIN itself (both receive queues are read
// to their end, so it is not a reset). sent, when not nil, is called once
// dst has sent something: data or the FIN.
func (p *Proxy) copyHalf(l *link, dst, src net.Conn, sent func()) {
	err := copyStream(dst, src, sent)
	if err == nil && l.halves.Add(1) == 1 {
		cw, ok := dst.(closeWriter)
		if ok {
			err = cw.CloseWrite()
			if err == nil && sent != nil {
				sent()
			}
		} else {
			err = errors.New("no half-close")
		}
	}
	if err != nil {
		l.close()
	}
}

// copyStream copies src to dst until src's end of stream (nil) or an
// error of either; sent, when not nil, is called after the first write.
func copyStream(dst, src net.Conn, sent func()) error {
	small := smallPool.Get().(*[smallBuf]byte)
	defer smallPool.Put(small)
	var large *[largeBuf]byte
	defer func() {
		if large != nil {
			largePool.Put(large)
		}
	}()
	buf := small[:]
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
			if sent != nil {
				sent()
				sent = nil
			}
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch {
		case n == len(buf) && large == nil:
			large = largePool.Get().(*[largeBuf]byte)
			buf = large[:]
		case n <= smallBuf && large != nil:
			largePool.Put(large)
			large = nil
			buf = small[:]
		}
	}
}
