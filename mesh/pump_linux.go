package mesh

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The pump copies the bytes of every proxied connection on Linux: a few
// event loops, each an epoll instance in edge-triggered mode and one
// goroutine, instead of two goroutines per connection blocked in Go's
// poller. The profile of bench/mesh showed the per-connection goroutines
// costing more than the copy itself: a request and its answer took the
// scheduler, a futex wake-up and a read(2) that found nothing, in each
// direction. In a loop, one epoll_wait(2) serves every connection that
// is ready, and a read shorter than the buffer ends the turn of a
// direction without the read that finds nothing (any later arrival is a
// new edge).
//
// A connection is accepted and dialled with Go's net package (ejection,
// retries and keep-alive stay as they are), then handed over: its two
// descriptors are duplicated, the net.Conns closed, and the loop owns
// the duplicates until it closes them.

// pumpScratch is the buffer of a loop's reads. A direction whose
// destination does not take all it read keeps the rest in a pending
// buffer of the same size and reads no more until it is written
// (back-pressure: at most one pending buffer per direction).
const pumpScratch = 64 << 10

// pumpTurn is how many full reads a direction may make before the loop
// serves the others; the rest waits for the next turn.
const pumpTurn = 16

var pendingPool = sync.Pool{New: func() any { return new([pumpScratch]byte) }}

// pumpLoops is how many loops run: BERTH_MESH_LOOPS (experiments), else 1.
func pumpLoops() int {
	if n, err := strconv.Atoi(os.Getenv("BERTH_MESH_LOOPS")); err == nil && n > 0 {
		return min(n, runtime.GOMAXPROCS(0))
	}
	return 1
}

// pumps is the package's set of loops, started when the first proxy
// hands a connection over and stopped when the last proxy that used them
// is closed.
var pumps struct {
	mu    sync.Mutex
	users int
	loops []*pump
	next  int
}

// acquirePumps registers a user of the loops, starting them if needed.
func acquirePumps() error {
	pumps.mu.Lock()
	defer pumps.mu.Unlock()
	if pumps.users == 0 {
		n := pumpLoops()
		for range n {
			pm, err := newPump()
			if err != nil {
				for _, pm := range pumps.loops {
					pm.stop()
				}
				pumps.loops = nil
				return err
			}
			pumps.loops = append(pumps.loops, pm)
		}
	}
	pumps.users++
	return nil
}

// releasePumps ends a user's registration; the last one stops the loops,
// which by then hold no connection of any proxy.
func releasePumps() {
	pumps.mu.Lock()
	defer pumps.mu.Unlock()
	pumps.users--
	if pumps.users > 0 {
		return
	}
	for _, pm := range pumps.loops {
		pm.stop()
	}
	pumps.loops = nil
}

// pickPump returns the loop of a new connection, in turn.
func pickPump() *pump {
	pumps.mu.Lock()
	defer pumps.mu.Unlock()
	pm := pumps.loops[pumps.next%len(pumps.loops)]
	pumps.next++
	return pm
}

// pump is one event loop.
type pump struct {
	epfd, evfd int
	done       chan struct{} // closed when run returns

	mu      sync.Mutex // guards the fields below
	adds    []*plink
	closes  []*plink
	quit    bool
	wakeups bool // evfd has been written since the loop last read it

	// The loop's own, touched by run only.
	ends    map[int]*pumpEnd
	links   int
	dirty   []*plink
	scratch [pumpScratch]byte
}

// pumpEnd is one socket of a pumped connection.
type pumpEnd struct {
	fd                 int
	l                  *plink
	readable, writable bool
	hup                bool // the peer's end of stream (or an error) has been seen
}

// pumpDir is one direction of a pumped connection.
type pumpDir struct {
	src, dst *pumpEnd
	pending  []byte             // read and not yet written
	buf      *[pumpScratch]byte // holds pending
	eof      bool               // src reached its end of stream
	done     bool               // eof passed on (dst shut for writing), or the link ended
}

// plink is a connection the pump owns.
type plink struct {
	ends   [2]pumpEnd // the client's, the backend's
	dirs   [2]pumpDir // client to backend, backend to client
	closed bool       // both sockets closed
	queued bool       // in the loop's dirty list
	finish func()     // called once, on the loop, after both sockets are closed
}

func newPump() (*pump, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	pm := &pump{epfd: epfd, evfd: evfd, done: make(chan struct{}), ends: map[int]*pumpEnd{}}
	go pm.run()
	return pm, nil
}

// wake makes the loop look at its queues.
func (pm *pump) wakeLocked() {
	if pm.wakeups {
		return
	}
	pm.wakeups = true
	one := [8]byte{1}
	unix.Write(pm.evfd, one[:])
}

// add hands l to the loop.
func (pm *pump) add(l *plink) {
	pm.mu.Lock()
	pm.adds = append(pm.adds, l)
	pm.wakeLocked()
	pm.mu.Unlock()
}

// close asks the loop to close l's sockets (no-op once closed).
func (pm *pump) close(l *plink) {
	pm.mu.Lock()
	pm.closes = append(pm.closes, l)
	pm.wakeLocked()
	pm.mu.Unlock()
}

// stop ends the loop once it holds no connection, and waits for it.
func (pm *pump) stop() {
	pm.mu.Lock()
	pm.quit = true
	pm.wakeLocked()
	pm.mu.Unlock()
	<-pm.done
}

func (pm *pump) run() {
	defer close(pm.done)
	defer unix.Close(pm.evfd)
	defer unix.Close(pm.epfd)
	events := make([]unix.EpollEvent, 256)
	for {
		timeout := -1
		if len(pm.dirty) > 0 {
			timeout = 0 // turns left over: look for new events, then serve them
		}
		n, err := unix.EpollWait(pm.epfd, events, timeout)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic("mesh: epoll_wait: " + err.Error()) // EBADF, EFAULT, EINVAL: a bug of this file
		}
		queues := false
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == pm.evfd {
				queues = true
				continue
			}
			e := pm.ends[fd]
			if e == nil {
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e.readable = true
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e.hup = true
			}
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e.writable = true
			}
			pm.mark(e.l)
		}
		if queues && pm.takeQueues() {
			return
		}
		dirty := pm.dirty
		pm.dirty = nil
		for _, l := range dirty {
			l.queued = false
			if !l.closed {
				pm.serve(l)
			}
		}
	}
}

// takeQueues registers the connections handed over and closes those
// asked to close. It reports whether the loop is to end.
func (pm *pump) takeQueues() bool {
	var b [8]byte
	pm.mu.Lock()
	unix.Read(pm.evfd, b[:])
	pm.wakeups = false
	adds, closes, quit := pm.adds, pm.closes, pm.quit
	pm.adds, pm.closes = nil, nil
	pm.mu.Unlock()
	for _, l := range adds {
		pm.register(l)
	}
	for _, l := range closes {
		pm.end(l)
	}
	return quit && pm.links == 0
}

// register adds both sockets of l to the epoll set. A socket that is
// readable already gets its first event at once (epoll polls it on ADD).
func (pm *pump) register(l *plink) {
	pm.links++
	for i := range l.ends {
		e := &l.ends[i]
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(e.fd)}
		if err := unix.EpollCtl(pm.epfd, unix.EPOLL_CTL_ADD, e.fd, &ev); err != nil {
			pm.end(l)
			return
		}
		pm.ends[e.fd] = e
	}
	// The client's request is often there already: try both sockets now
	// rather than after the events of the next epoll_wait (a read that
	// finds nothing costs less than a turn of the loop).
	l.ends[0].readable, l.ends[1].readable = true, true
	pm.mark(l)
}

func (pm *pump) mark(l *plink) {
	if !l.queued {
		l.queued = true
		pm.dirty = append(pm.dirty, l)
	}
}

// serve moves what it can in both directions of l.
func (pm *pump) serve(l *plink) {
	for i := range l.dirs {
		d := &l.dirs[i]
		if d.done {
			continue
		}
		more, err := pm.flow(d)
		if err != nil {
			pm.end(l)
			return
		}
		if more {
			pm.mark(l)
		}
		if d.eof && len(d.pending) == 0 {
			// End of stream passed on: a half-close, unless the other
			// direction has ended too; then both sockets close, and
			// close(2) sends the FIN itself.
			d.done = true
			if l.dirs[1-i].done {
				pm.end(l)
				return
			}
			if err := unix.Shutdown(d.dst.fd, unix.SHUT_WR); err != nil {
				pm.end(l)
				return
			}
		}
	}
}

// flow copies d's source to its destination until the source has no
// more for now, the destination takes no more, or the turn is over
// (more). A nil error with d.eof set means the source's end of stream.
func (pm *pump) flow(d *pumpDir) (more bool, err error) {
	for turn := 0; ; turn++ {
		if len(d.pending) > 0 {
			if !d.dst.writable {
				return false, nil
			}
			n, err := write(d.dst.fd, d.pending)
			if err == unix.EAGAIN {
				d.dst.writable = false
				return false, nil
			}
			if err != nil {
				return false, err
			}
			d.pending = d.pending[n:]
			if len(d.pending) > 0 {
				d.dst.writable = false // the send buffer is full: wait for its edge
				return false, nil
			}
			pendingPool.Put(d.buf)
			d.buf, d.pending = nil, nil
		}
		if d.eof || !d.src.readable {
			return false, nil
		}
		if turn == pumpTurn {
			return true, nil
		}
		n, err := read(d.src.fd, pm.scratch[:])
		if err == unix.EAGAIN {
			d.src.readable = false
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			d.eof = true
			return false, nil
		}
		w := 0
		if d.dst.writable {
			w, err = write(d.dst.fd, pm.scratch[:n])
			if err == unix.EAGAIN {
				w, err = 0, nil
			}
			if err != nil {
				return false, err
			}
		}
		if w < n {
			d.buf = pendingPool.Get().(*[pumpScratch]byte)
			d.pending = d.buf[:copy(d.buf[:], pm.scratch[w:n])]
			d.dst.writable = false
			return false, nil
		}
		if n < len(pm.scratch) && !d.src.hup {
			// A short read emptied the receive queue: whatever arrives
			// later is a new edge. Not so for an end of stream that
			// arrived with the data, before the events were read: its
			// edge was the data's, so a socket whose events said RDHUP is
			// read until it says end of stream.
			d.src.readable = false
			return false, nil
		}
	}
}

// end closes l's sockets, if not yet, and reports the connection over.
func (pm *pump) end(l *plink) {
	if l.closed {
		return
	}
	l.closed = true
	for i := range l.ends {
		e := &l.ends[i]
		if pm.ends[e.fd] == e {
			delete(pm.ends, e.fd)
		}
		unix.Close(e.fd)
	}
	for i := range l.dirs {
		if d := &l.dirs[i]; d.buf != nil {
			pendingPool.Put(d.buf)
			d.buf, d.pending = nil, nil
		}
	}
	pm.links--
	l.finish()
}

// read and write are read(2) and write(2) without the scheduler's
// bookkeeping of a blocking system call: the sockets are non-blocking.
func read(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func write(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// takeFD duplicates c's socket (close-on-exec, non-blocking like the
// original: they share the open file) and closes c.
func takeFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	c.Close()
	return fd, nil
}

// forward hands l to a loop of the pump, which copies both ways and takes
// l out of the proxy's and b's books when it ends. Where the loops cannot
// start, or the sockets cannot be taken over, the connection is copied by
// goroutines as elsewhere.
func (p *Proxy) forward(b *backend, l *link) {
	if !p.usePumps() {
		p.copyAndLeave(b, l)
		return
	}
	l.mu.Lock()
	if l.closed { // closed since the dial: the proxy's Close or the backend's grace
		l.mu.Unlock()
		p.leave(b, l)
		b.conns.Add(-1)
		return
	}
	cfd, err := takeFD(l.client)
	if err != nil {
		l.mu.Unlock()
		p.copyAndLeave(b, l)
		return
	}
	ufd, err := takeFD(l.upstream)
	if err != nil {
		unix.Close(cfd) // the client's socket has gone with its net.Conn
		l.closed = true
		l.mu.Unlock()
		l.upstream.Close()
		p.leave(b, l)
		b.conns.Add(-1)
		return
	}
	pl := &plink{}
	pl.ends[0] = pumpEnd{fd: cfd, l: pl, writable: true}
	pl.ends[1] = pumpEnd{fd: ufd, l: pl, writable: true}
	pl.dirs[0] = pumpDir{src: &pl.ends[0], dst: &pl.ends[1]}
	pl.dirs[1] = pumpDir{src: &pl.ends[1], dst: &pl.ends[0]}
	p.wg.Add(1) // this goroutine is the proxy's: the count is above zero
	pl.finish = func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		b.leave(l)
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		b.conns.Add(-1)
		p.wg.Done()
	}
	pm := pickPump()
	l.stop = func() { pm.close(pl) }
	pm.add(pl)
	l.mu.Unlock()
}

// usePumps registers p as a user of the loops, once; false when p is
// closed or the loops cannot start.
func (p *Proxy) usePumps() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.pumpErr != nil {
		return false
	}
	if !p.pumping {
		if err := acquirePumps(); err != nil {
			p.pumpErr = err
			p.log.Warn("mesh: event loops unavailable; copying with goroutines", "err", err)
			return false
		}
		p.pumping = true
	}
	return true
}
