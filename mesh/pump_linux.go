package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The pump serves the proxy's listeners and connections on Linux: event
// loops, each an epoll instance in edge-triggered mode run by one
// goroutine, as HAProxy does, instead of a goroutine per connection and
// direction parked in Go's poller. The profile of bench/mesh showed those
// goroutines costing more than the copy itself: each request and answer
// took the scheduler, a futex wake-up and a read(2) that found nothing in
// each direction, and each new connection two goroutines, a dial through
// the net package and its bookkeeping.
//
// In a loop, one epoll_wait(2) serves every socket that is ready, accept4(2)
// and a non-blocking connect(2) open the connections, and a read shorter
// than the buffer ends a direction's turn without the read that finds
// nothing (any later arrival is a new edge). A listener that is not a
// *net.TCPListener, and a backend whose address is a host name, go through
// the net package and are handed over once connected.

// pumpScratch is the buffer of a loop's reads. A direction whose
// destination does not take all it read keeps the rest in a pending
// buffer of the same size and reads no more until it is written
// (back-pressure: at most one pending buffer per direction).
const pumpScratch = 64 << 10

// pumpTurn is how many full reads a direction, or accepts a listener, may
// make before the loop serves the others; the rest waits for the next
// turn.
const pumpTurn = 16

// pumpHold is how many holds in a row, of a millisecond each, may find
// nothing before the loop parks in Go's poller; pumpCold is how many waits
// it then makes in Go's poller before it holds again (wait).
const (
	pumpHold = 10
	pumpCold = 64
)

// pumpPassGap is the least time between two passes of the watcher
// through Go's poller (passThrough) while the runtime's wake-up eventfd is
// left unread (only a blocking poll reads it), or where that eventfd was
// not found. A pass's own eventfd write is an event of Go's poller too,
// gone once the pass has polled; but with the wake-up eventfd readable,
// Go's poller's set stays readable, and every pass would call the next
// (found in testing: 10 passes per ms for 300 ms under a flood).
const pumpPassGap = time.Millisecond

var pendingPool = sync.Pool{New: func() any { return new([pumpScratch]byte) }}

// pumpLoops is how many loops run: one per core the Go scheduler runs on,
// as HAProxy runs a thread per core. A listener is accepted on by one loop,
// which hands each new connection to the loop holding the fewest (HAProxy's
// listener queues do the same): on bench/mesh's 2 cores one loop left a
// fifth of the CPU idle, every request waiting its turn on one thread, as
// HAProxy does with nbthread 1.
func pumpLoops() int { return min(runtime.GOMAXPROCS(0), 64) }

// pumps is the package's set of loops, started when the first proxy uses
// them and stopped when the last proxy that used them is closed.
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
		var err error
		for range pumpLoops() {
			var pm *pump
			if pm, err = newPump(); err != nil {
				break
			}
			pumps.loops = append(pumps.loops, pm)
		}
		// Each loop reads its peers from its first turn on: a holding
		// loop takes turns with no event (wait). The first loop watches
		// Go's poller while it holds (setHot).
		for i, pm := range pumps.loops {
			pm.peers = pumps.loops
			pm.watcher = i == 0
			go pm.run()
		}
		if err != nil {
			for _, pm := range pumps.loops {
				pm.stop()
			}
			pumps.loops = nil
			return err
		}
	}
	pumps.users++
	return nil
}

// releasePumps ends a user's registration; the last one stops the loops,
// which by then hold no connection nor listener of any proxy.
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

// pickPump returns a loop, in turn.
func pickPump() *pump {
	pumps.mu.Lock()
	defer pumps.mu.Unlock()
	pm := pumps.loops[pumps.next%len(pumps.loops)]
	pumps.next++
	return pm
}

// lightest returns the loop holding the fewest connections, pm on a tie.
// The loops it chooses from are fixed while any proxy uses them, and pm's
// proxy does.
func (pm *pump) lightest() *pump {
	best, least := pm, pm.load.Load()
	for _, o := range pm.peers {
		if n := o.load.Load(); n < least {
			best, least = o, n
		}
	}
	return best
}

// pump is one event loop.
type pump struct {
	epfd, evfd int             // the loop's epoll set, and the eventfd its posts write
	brfd       int             // the bridge: an epoll set holding epfd while the loop is cold (setHot)
	ep         *os.File        // brfd, in Go's poller: a cold loop parks on it
	epc        syscall.RawConn // ep's
	done       chan struct{}   // closed when run returns
	peers      []*pump         // every loop, itself included; set before the loop runs
	load       atomic.Int64    // connections held: links, and those handed to it not yet opened
	asleep     atomic.Bool     // parked in Go's poller (wait), until it returns or a peer nudges it

	mu    sync.Mutex // guards the fields below
	posts []func()   // run on the loop, in order
	quit  bool
	woken bool // evfd has been written since the loop last read it

	// The loop's own, touched on the loop only.
	ends        map[int]*pumpEnd
	acceptors   map[int]*pumpAcceptor
	links       int
	dirty       []*plink
	again       []*pumpAcceptor // listeners whose turn ended with more to accept
	connecting  map[*plink]struct{}
	parked      time.Time // when the loop last went through the scheduler
	cold        int       // waits left to make in Go's poller after pumpHold empty holds in a row (wait)
	idle        int       // holds in a row that found nothing
	hot         bool      // holding: epfd is not in the bridge, and holds Go's poller's set on the watcher (setHot)
	watcher     bool      // the loop that watches Go's poller while it holds; set before the loop runs
	noHold      bool      // a switch failed (setHot): the loop stays in Go's poller
	noCold      bool      // a switch back failed (setHot): the loop holds, without watching
	pass        bool      // Go's poller has events: the loop parks in it once (passThrough)
	lastPass    time.Time // when the last pass ended
	kick        *os.File  // an eventfd in Go's poller, the watcher's: a pass parks on it
	kickc       syscall.RawConn
	holds       atomic.Int64 // holds that ended with events of the loop's own (tests read it)
	passes      atomic.Int64 // passes through Go's poller (kick; tests read it)
	events      [256]unix.EpollEvent
	pollOnce    func(uintptr) bool // for epc.Read: polls into events, n and err; true when there was something
	polls, n    int
	err         error
	deadline    time.Time // the epoll file's read deadline, when deadlineSet
	deadlineSet bool
	scratch     [pumpScratch]byte
}

// pumpAcceptor is a listener the loop accepts on.
type pumpAcceptor struct {
	fd      int
	p       *Proxy
	nodelay bool          // on the listener since before it listened, so on every socket accepted (Linux copies it)
	retry   time.Time     // after a full file table: accept again from then
	backoff time.Duration // of the last full file table
	removed chan struct{} // closed once the loop has closed fd
}

// pumpEnd is one socket of a pumped connection.
type pumpEnd struct {
	fd                 int // -1: none (the backend's, between dials)
	l                  *plink
	readable, writable bool
	hup                bool // the peer's end of stream (or an error) has been seen
	holdACK            bool // dialled with Config.ClientFirst, and nothing sent yet
}

// send writes p to e's socket, noting (sent) what it wrote.
func (e *pumpEnd) send(p []byte) (int, error) {
	n, err := write(e.fd, p)
	if n > 0 {
		e.sent()
	}
	return n, err
}

// sent notes that e's socket has sent what the handshake's held ACK
// (Config.ClientFirst) waited for: data, or a FIN. The ACK has left with
// it, and the socket goes back to quick ACKs; left in the delayed-ACK mode
// that TCP_QUICKACK off put it in, it would hold its ACK of the backend's
// first answer for up to 40 ms, which a backend that writes an answer in
// two pieces with Nagle on waits for.
func (e *pumpEnd) sent() {
	if e.holdACK {
		e.holdACK = false
		rawSetInt(e.fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	}
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

	// Set by the loop's own connections (accepted by an acceptor).
	p          *Proxy
	l          *link
	ip         netip.Addr // the client's
	b          *backend   // the backend dialled or connected
	joined     bool       // in b's open connections
	tried      []*backend
	connecting bool
	deadline   time.Time // of the dial in progress

	finish func() // called once, on the loop, after both sockets are closed
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
	// An idle loop parks in Go's poller, on the bridge: an epoll set that
	// holds the loop's set while the loop is cold (an epoll set is
	// readable while it holds events); a busy one holds in a raw
	// epoll_wait of its own set, which then holds Go's poller's (wait,
	// setHot). Not a blocking epoll_wait through the syscall package: a
	// thread in a system call the scheduler knows of loses its P to the
	// scheduler's monitor, which, with a loop per P, woke that monitor
	// every 20 µs and cost more CPU per request than a second loop saved.
	brfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	if err := unix.EpollCtl(brfd, unix.EPOLL_CTL_ADD, epfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(epfd)}); err != nil {
		unix.Close(brfd)
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	if err := unix.SetNonblock(brfd, true); err != nil {
		unix.Close(brfd)
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	ep := os.NewFile(uintptr(brfd), "epoll")
	epc, err := ep.SyscallConn()
	if err == nil {
		// Not in Go's poller (NewFile could not add it), the loop could
		// not wait on it: the proxy serves with goroutines instead.
		err = ep.SetReadDeadline(time.Time{})
	}
	if err != nil {
		ep.Close()
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("epoll set in Go's poller: %w", err)
	}
	goPoller.once.Do(func() { goPoller.fd, goPoller.wake = findGoPoller(brfd) })
	pm := &pump{epfd: epfd, evfd: evfd, brfd: brfd, ep: ep, epc: epc, done: make(chan struct{}), ends: map[int]*pumpEnd{},
		acceptors: map[int]*pumpAcceptor{}, connecting: map[*plink]struct{}{}}
	pm.pollOnce = func(uintptr) bool {
		pm.polls++
		pm.n, pm.err = pm.poll()
		return pm.n > 0 || pm.err != nil
	}
	return pm, nil
}

// post runs f on the loop.
func (pm *pump) post(f func()) {
	pm.mu.Lock()
	pm.posts = append(pm.posts, f)
	if !pm.woken {
		pm.woken = true
		one := [8]byte{1}
		unix.Write(pm.evfd, one[:])
	}
	pm.mu.Unlock()
}

// close asks the loop to close l's sockets (nothing once closed).
func (pm *pump) close(l *plink) { pm.post(func() { pm.end(l) }) }

// stop ends the loop once it holds no connection nor listener, and waits
// for it.
func (pm *pump) stop() {
	pm.mu.Lock()
	pm.quit = true
	pm.mu.Unlock()
	pm.post(func() {})
	<-pm.done
}

func (pm *pump) run() {
	defer close(pm.done)
	defer unix.Close(pm.evfd)
	defer unix.Close(pm.epfd)
	defer pm.ep.Close()
	defer func() {
		if pm.kick != nil {
			pm.kick.Close()
		}
	}()
	events := pm.events[:]
	for {
		pm.yield()
		timeout := pm.timeout()
		n, err := pm.wait(timeout)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic("mesh: epoll_wait: " + err.Error()) // EBADF, EFAULT, EINVAL: a bug of this file
		}
		posted := false
		var ready []*pumpAcceptor
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == pm.evfd {
				posted = true
				continue
			}
			if fd == goPoller.fd {
				pm.pass = true
				continue
			}
			if a := pm.acceptors[fd]; a != nil {
				ready = append(ready, a)
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
		if posted && pm.runPosts() {
			return
		}
		pm.expire()
		ready = append(ready, pm.again...)
		pm.again = nil
		for _, a := range ready {
			if pm.acceptors[a.fd] == a {
				pm.accept(a)
			}
		}
		dirty := pm.dirty
		pm.dirty = nil
		for _, l := range dirty {
			l.queued = false
			if !l.closed {
				pm.serve(l)
			}
		}
		pm.nudge()
		if pm.pass && time.Since(pm.lastPass) >= pm.passGap() {
			pm.pass = false
			pm.passThrough()
			pm.lastPass = time.Now()
		}
	}
}

// nudge wakes the peers that sleep in Go's poller while their epoll set
// holds events (ppoll(2) of the set, without waiting). Go's poller is waited on by one thread at most, and the
// thread that came back from it with this loop waits there no more until
// the loop parks again: while the loop works, a peer's events would wait
// for it, and the other core idled. A deadline in the past makes the
// scheduler ready the peer at once, and start a thread for it.
func (pm *pump) nudge() {
	for _, o := range pm.peers {
		if o == pm || !o.asleep.Load() {
			continue
		}
		fds := [1]unix.PollFd{{Fd: int32(o.epfd), Events: unix.POLLIN}}
		var zero unix.Timespec // ppoll(2): every Linux architecture has it, not all have poll(2)
		r, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		if e != 0 || r == 0 || !o.asleep.CompareAndSwap(true, false) {
			continue
		}
		o.ep.SetReadDeadline(time.Unix(1, 0))
	}
}

// wait returns the events of the loop's set: at once when timeout is 0,
// else when there are some or after timeout milliseconds (-1: none); a
// hold may also return none after a millisecond.
//
// A loop first holds: it waits in epoll_wait(2) itself, keeping its P, a
// millisecond at a time. Under load the next events come within
// microseconds, and the kernel wakes this thread as it wakes one of
// HAProxy's, without Go's scheduler: a loop parked in Go's poller is
// readied by whichever thread polls next, and none does while the others
// run, which left a core idle 2 µs per keep-alive request (benchmark,
// steps 7 and 8 of docs/mesh.md). The call is raw, unknown to the
// scheduler, so the P is not handed off and taken back on every wait.
//
// Held, the P runs nothing else, and with every P held no thread polls
// Go's poller for the program's other goroutines: their network reads
// waited for the scheduler's monitor, 10 ms (step 7). So the watcher, one
// loop, holds with Go's poller's own epoll set in its set (setHot): when
// that has events, the loop ends its turn with a pass through Go's poller
// (passThrough), and the thread polls it on its way through the
// scheduler. The scheduler's timers and run queue get each loop's P every
// millisecond (yield). pumpHold holds in a row that find nothing send the
// loop to Go's poller for its next pumpCold waits, so that an idle proxy
// holds no P.
func (pm *pump) wait(timeout int) (int, error) {
	if timeout == 0 {
		return pm.poll()
	}
	if (pm.cold > 0 || goPoller.fd < 0 || pm.noHold) && !pm.noCold {
		pm.cold = max(pm.cold-1, 0)
		pm.setHot(false)
	} else if pm.setHot(true); pm.hot {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(pm.epfd), uintptr(unsafe.Pointer(&pm.events[0])), uintptr(len(pm.events)), 1, 0, 0)
		if e != 0 {
			return 0, e // EINTR: a signal (the scheduler's preemption, a profiler); the loop waits again
		}
		if r > 0 {
			pm.idle = 0
			if r > 1 || int(pm.events[0].Fd) != goPoller.fd {
				pm.holds.Add(1)
			}
			return int(r), nil
		}
		if pm.idle++; pm.idle >= pumpHold {
			pm.idle, pm.cold = 0, pumpCold
		}
		return 0, nil
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(time.Duration(timeout) * time.Millisecond)
	}
	if !pm.deadlineSet || !deadline.Equal(pm.deadline) { // none while no dial is pending: no call
		if err := pm.ep.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		pm.deadline, pm.deadlineSet = deadline, true
	}
	pm.polls, pm.n, pm.err = 0, 0, nil
	pm.asleep.Store(true)
	rerr := pm.epc.Read(pm.pollOnce)
	pm.asleep.Store(false)
	if pm.polls > 1 {
		pm.parked = time.Now()
	}
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		pm.deadlineSet = false // the poller holds the expiry until a deadline is set again
		rerr = nil
	}
	if pm.err == nil && rerr != nil {
		return 0, rerr
	}
	return pm.n, pm.err
}

// setHot moves the loop between holding (hot: the loop's set out of the
// bridge and, on the watcher, Go's poller's set in the loop's) and
// parking in Go's poller (the loop's set in the bridge, which Go's poller
// watches, and Go's set out of the loop's). Each leaves before the other
// enters: the two at once would be a loop of epoll sets, which the kernel
// refuses (ELOOP). Adding a set that has events gives its watcher an
// event at once.
//
// One loop watches, not every loop: the kernel refuses an ADD that would
// give a file more than 50 wake-up paths four sets down (socket, loop's
// set, bridge, Go's set, and then every watching loop's set: with 52
// loops, found in review), and an event of Go's poller would make every
// watcher pass where one thread polls.
//
// A switch that fails (the user's epoll watch limit, the paths above)
// loses nothing: the loop stays or goes back where it can wait, and stops
// switching (noHold, noCold).
func (pm *pump) setHot(hot bool) {
	if pm.hot == hot {
		return
	}
	if hot {
		if err := rawEpollCtl(pm.brfd, unix.EPOLL_CTL_DEL, pm.epfd, nil); err != nil {
			pm.switchFailed("the loop's set out of the bridge", err)
			pm.noHold = true
			return
		}
		if pm.watcher {
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(goPoller.fd)}
			if err := rawEpollCtl(pm.epfd, unix.EPOLL_CTL_ADD, goPoller.fd, &ev); err != nil {
				pm.switchFailed("Go's poller's set into the loop's", err)
				pm.noHold = true
				pm.hot = true // the loop's set is out of the bridge: back into it
				pm.setHot(false)
				return
			}
		}
	} else {
		if pm.watcher {
			if err := rawEpollCtl(pm.epfd, unix.EPOLL_CTL_DEL, goPoller.fd, nil); err != nil && err != unix.ENOENT {
				pm.switchFailed("Go's poller's set out of the loop's", err)
				pm.noCold, pm.watcher = true, false
				return
			}
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(pm.epfd)}
		if err := rawEpollCtl(pm.brfd, unix.EPOLL_CTL_ADD, pm.epfd, &ev); err != nil {
			// Not in Go's poller, the loop cannot park: it holds, a
			// millisecond at a time, without watching.
			pm.switchFailed("the loop's set into the bridge", err)
			pm.noCold, pm.watcher = true, false
			return
		}
	}
	pm.hot = hot
}

// passGap is the least time from the last pass to the next: none while
// the runtime's wake-up eventfd is unread, pumpPassGap else.
func (pm *pump) passGap() time.Duration {
	if goPoller.wake < 0 {
		return pumpPassGap
	}
	fds := [1]unix.PollFd{{Fd: int32(goPoller.wake), Events: unix.POLLIN}}
	var zero unix.Timespec
	r, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	if e != 0 || r != 0 {
		return pumpPassGap
	}
	return 0
}

// switchFailed logs a failed switch of setHot.
func (pm *pump) switchFailed(what string, err error) {
	slog.Warn("mesh: an event loop stops switching between holding and Go's poller", "step", what, "err", err)
}

// passThrough lets the scheduler poll Go's poller for the program's other
// goroutines, which have events there: the watcher parks in Go's poller
// once, on its kick eventfd, which it writes only after Read has cleared
// what the poller had seen of it, so the park ends at the next poll. The
// thread polls on its way through the scheduler, and runs what it
// readied. A thread without a P may have polled first, and left those
// goroutines in the global run queue: Gosched runs them.
func (pm *pump) passThrough() {
	if pm.kick == nil {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			runtime.Gosched()
			return
		}
		f := os.NewFile(uintptr(fd), "eventfd")
		c, err := f.SyscallConn()
		if err == nil {
			err = f.SetReadDeadline(time.Time{}) // in Go's poller
		}
		if err != nil {
			f.Close()
			runtime.Gosched()
			return
		}
		pm.kick, pm.kickc = f, c
	}
	pm.passes.Add(1)
	first := true
	pm.kickc.Read(func(fd uintptr) bool {
		if !first {
			return true
		}
		// Never read back: a read of an eventfd tells its pollers it
		// is writable, an event of Go's poller that would call the next
		// pass (found in testing). Its count, one per pass, stays far
		// from its limit (2⁶⁴−2).
		first = false
		b := [8]byte{1}
		unix.Write(int(fd), b[:])
		return false
	})
	pm.parked = time.Now()
	runtime.Gosched()
}

// goPoller is Go's poller's epoll set, found once (findGoPoller); -1 when
// it was not, and then the loops never hold.
var goPoller struct {
	once sync.Once
	fd   int
	wake int // the runtime's wake-up eventfd in it, -1 when not found
}

// findGoPoller returns the descriptor of Go's poller's epoll set: the one
// epoll set of the process that watches bridge, a set that was just given
// to Go's poller (os.NewFile). The runtime does not name it; Linux lists
// what an epoll set watches in /proc/self/fdinfo ("tfd:" lines). -1 when
// not exactly one set matches. It also returns the runtime's wake-up
// eventfd: the one descriptor that set watches level-triggered (every
// file of Go's poller is edge-triggered), -1 when not exactly one.
func findGoPoller(bridge int) (set, wake int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, -1
	}
	set, wake = -1, -1
	want := strconv.Itoa(bridge)
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + ent.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + ent.Name())
		if err != nil {
			continue
		}
		level, levels, watches := -1, 0, false
		for line := range strings.Lines(string(info)) {
			f := strings.Fields(line) // tfd: N events: HEX data: ...
			if len(f) < 4 || f[0] != "tfd:" || f[2] != "events:" {
				continue
			}
			if f[1] == want {
				watches = true
			}
			ev, err := strconv.ParseUint(f[3], 16, 32)
			if err == nil && ev&unix.EPOLLET == 0 {
				level, _ = strconv.Atoi(f[1])
				levels++
			}
		}
		if !watches {
			continue
		}
		if set >= 0 && set != fd {
			return -1, -1
		}
		set = fd
		if levels == 1 {
			wake = level
		}
	}
	return set, wake
}

// poll is epoll_wait(2) of the loop's set into pm.events, without waiting.
func (pm *pump) poll() (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(pm.epfd), uintptr(unsafe.Pointer(&pm.events[0])), uintptr(len(pm.events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// yield lets the scheduler run another goroutine when the loop has not
// parked for a millisecond. A goroutine that runs for 10 ms without going
// through the scheduler is preempted by a signal, and each preemption
// keeps the scheduler's monitor waking every 20 µs for the next
// millisecond: under load, where every wait finds events at once, that
// was 4 wake-ups of the monitor per proxied connection.
func (pm *pump) yield() {
	if now := time.Now(); now.Sub(pm.parked) >= time.Millisecond {
		runtime.Gosched()
		pm.parked = now
	}
}

// timeout is epoll_wait's: 0 when work is left over from the last turn,
// else until the first dial deadline or accept retry, else forever.
func (pm *pump) timeout() int {
	if len(pm.dirty) > 0 || len(pm.again) > 0 {
		return 0
	}
	var first time.Time
	for l := range pm.connecting {
		if first.IsZero() || l.deadline.Before(first) {
			first = l.deadline
		}
	}
	for _, a := range pm.acceptors {
		if !a.retry.IsZero() && (first.IsZero() || a.retry.Before(first)) {
			first = a.retry
		}
	}
	if first.IsZero() {
		return -1
	}
	return max(int(time.Until(first).Milliseconds())+1, 0)
}

// runPosts runs what was posted, and reports whether the loop is to end.
func (pm *pump) runPosts() bool {
	var b [8]byte
	pm.mu.Lock()
	unix.Read(pm.evfd, b[:])
	pm.woken = false
	posts, quit := pm.posts, pm.quit
	pm.posts = nil
	pm.mu.Unlock()
	for _, f := range posts {
		f()
	}
	return quit && pm.links == 0 && len(pm.acceptors) == 0
}

// expire fails the dials past their deadline and retries the listeners
// whose file table was full.
func (pm *pump) expire() {
	now := time.Now()
	for l := range pm.connecting {
		if !now.Before(l.deadline) {
			pm.dialFailed(l, unix.ETIMEDOUT)
		}
	}
	for _, a := range pm.acceptors {
		if !a.retry.IsZero() && !now.Before(a.retry) {
			a.retry = time.Time{}
			pm.again = append(pm.again, a)
		}
	}
}

// watch adds fd to the epoll set for e. A socket that is ready already
// gets its first event at once (epoll polls it on ADD).
func (pm *pump) watch(e *pumpEnd) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(e.fd)}
	if err := rawEpollCtl(pm.epfd, unix.EPOLL_CTL_ADD, e.fd, &ev); err != nil {
		return err
	}
	pm.ends[e.fd] = e
	return nil
}

// register takes over a connection whose both sockets are open (handed
// over by forward).
func (pm *pump) register(l *plink) {
	pm.links++
	pm.load.Add(1)
	for i := range l.ends {
		if err := pm.watch(&l.ends[i]); err != nil {
			pm.end(l)
			return
		}
	}
	// The client's request is often there already: try both sockets now
	// rather than after the events of the next epoll_wait.
	l.ends[0].readable, l.ends[1].readable = true, true
	pm.mark(l)
}

func (pm *pump) mark(l *plink) {
	if !l.queued {
		l.queued = true
		pm.dirty = append(pm.dirty, l)
	}
}

// serve moves what it can in both directions of l; a link still dialling
// waits for the dial's end.
func (pm *pump) serve(l *plink) {
	if l.connecting {
		if e := &l.ends[1]; e.writable || e.hup {
			pm.dialDone(l)
		}
		return
	}
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
			if err := rawShutdown(d.dst.fd, unix.SHUT_WR); err != nil {
				pm.end(l)
				return
			}
			d.dst.sent()
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
			n, err := d.dst.send(d.pending)
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
			w, err = d.dst.send(pm.scratch[:n])
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

// closeEnd closes e's socket, if open.
func (pm *pump) closeEnd(e *pumpEnd) {
	if e.fd < 0 {
		return
	}
	if pm.ends[e.fd] == e {
		delete(pm.ends, e.fd)
	}
	rawClose(e.fd) // which takes it out of the epoll set
	e.fd = -1
}

// end closes l's sockets, if not yet, and reports the connection over.
func (pm *pump) end(l *plink) {
	if l.closed {
		return
	}
	l.closed = true
	delete(pm.connecting, l)
	for i := range l.ends {
		pm.closeEnd(&l.ends[i])
	}
	for i := range l.dirs {
		if d := &l.dirs[i]; d.buf != nil {
			pendingPool.Put(d.buf)
			d.buf, d.pending = nil, nil
		}
	}
	pm.links--
	pm.load.Add(-1)
	l.finish()
}

// dupFD duplicates c's socket: close-on-exec, and non-blocking like the
// original, whose open file it shares.
func dupFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// takeFD duplicates c's socket and closes c.
func takeFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	fd, err := dupFD(sc)
	if err != nil {
		return -1, err
	}
	c.Close()
	return fd, nil
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
			p.log.Warn("mesh: event loops unavailable; serving with goroutines", "err", err)
			return false
		}
		p.pumping = true
	}
	return true
}

// serveLoop accepts on ln in a loop of the pump until the proxy is
// closed; ok is false when it cannot (ln is not a TCP listener, or the
// loops cannot start), and the caller serves ln itself.
func (p *Proxy) serveLoop(ln net.Listener) (ok bool) {
	tl, isTCP := ln.(*net.TCPListener)
	if !isTCP || !p.usePumps() {
		return false
	}
	fd, err := dupFD(tl)
	if err != nil {
		return false
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		unix.Close(fd)
		return true
	}
	p.wg.Add(1) // the acceptor's: the connections it accepts are counted while it is
	p.mu.Unlock()
	ln.Close() // the loop's duplicate keeps the socket listening
	pm := pickPump()
	a := &pumpAcceptor{fd: fd, p: p, removed: make(chan struct{})}
	// Set on the listener before it listened (Listen does), TCP_NODELAY is
	// on every socket accepted from it; set later, not on those that
	// completed their handshake before.
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	a.nodelay = err == nil && v == 1
	pm.post(func() {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}
		if err := unix.EpollCtl(pm.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			p.log.Error("mesh: cannot watch the listener", "err", err)
		}
		pm.acceptors[fd] = a
		pm.again = append(pm.again, a) // connections queued before the ADD
	})
	<-p.ctx.Done()
	pm.post(func() {
		delete(pm.acceptors, fd)
		unix.Close(fd)
		close(a.removed)
		p.wg.Done()
	})
	<-a.removed
	return true
}

// accept takes the connections waiting on a's listener, a turn's worth.
func (pm *pump) accept(a *pumpAcceptor) {
	for range pumpTurn {
		nfd, ip, err := rawAccept(a.fd)
		switch {
		case err == unix.EAGAIN:
			a.backoff = 0
			return
		case err == unix.EINTR || err == unix.ECONNABORTED:
			continue
		case err != nil:
			// EMFILE and the like: accept again later, as net/http
			// does, so that a full file table is not a hot loop.
			a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
			a.retry = time.Now().Add(a.backoff)
			a.p.log.Warn("mesh: accept", "err", err, "retry_in", a.backoff)
			return
		}
		if !a.nodelay {
			rawSetInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		to, p := pm.lightest(), a.p
		to.load.Add(1)
		if to == pm {
			pm.open(p, nfd, ip)
			continue
		}
		p.wg.Add(1) // the acceptor's count is held: above zero
		to.post(func() {
			to.open(p, nfd, ip)
			p.wg.Done()
		})
	}
	pm.again = append(pm.again, a)
}

// open starts a connection from a client accepted on a loop (this one, or
// one that handed it over, counting it in pm.load): it is registered with
// the proxy, watched, and dialled to a backend.
func (pm *pump) open(p *Proxy, cfd int, ip netip.Addr) {
	l := &link{}
	pl := &plink{p: p, l: l, ip: ip}
	pl.ends[0] = pumpEnd{fd: cfd, l: pl, writable: true}
	pl.ends[1] = pumpEnd{fd: -1, l: pl}
	pl.dirs[0] = pumpDir{src: &pl.ends[0], dst: &pl.ends[1]}
	pl.dirs[1] = pumpDir{src: &pl.ends[1], dst: &pl.ends[0]}
	l.stop = func() { pm.close(pl) } // before the proxy's Close can see l
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		unix.Close(cfd)
		pm.load.Add(-1)
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(1) // the acceptor's count is held: above zero
	p.mu.Unlock()
	pm.links++
	pl.finish = func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		if pl.b != nil {
			if pl.joined {
				pl.b.leave(l)
			}
			pl.b.conns.Add(-1)
		}
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		p.wg.Done()
	}
	if err := pm.watch(&pl.ends[0]); err != nil {
		pm.end(pl)
		return
	}
	pm.dial(pl) // a request already there is reported by the watch, as the backend's data is
}

// dial connects pl to the next backend the strategy picks, or ends it
// when there is none left to try.
func (pm *pump) dial(pl *plink) {
	for len(pl.tried) < attempts {
		b := pl.p.pick(pl.ip, pl.tried)
		if b == nil {
			break
		}
		pl.tried = append(pl.tried, b)
		b.conns.Add(1)
		pl.b = b
		if !b.ap.IsValid() {
			pm.dialByName(pl, b)
			return
		}
		fd, err := rawConnect(b.ap, pl.p.cfg.ClientFirst)
		if err != nil {
			b.conns.Add(-1)
			pl.b = nil
			pl.p.refused(b, err)
			continue
		}
		pl.ends[1] = pumpEnd{fd: fd, l: pl, holdACK: pl.p.cfg.ClientFirst}
		if err := pm.watch(&pl.ends[1]); err != nil {
			break
		}
		pl.connecting = true
		pl.deadline = time.Now().Add(pl.p.cfg.DialTimeout)
		pm.connecting[pl] = struct{}{}
		return
	}
	pm.end(pl)
}

// dialByName dials a backend whose address is a host name through the
// net package, in a goroutine the proxy owns, and hands its socket to the
// loop.
func (pm *pump) dialByName(pl *plink, b *backend) {
	pl.connecting = true
	pl.deadline = time.Now().Add(pl.p.cfg.DialTimeout + time.Second) // the net package times the dial itself
	pm.connecting[pl] = struct{}{}
	p := pl.p
	p.wg.Add(1) // the link's count is held: above zero
	go func() {
		defer p.wg.Done()
		up, err := p.dial(b)
		fd := -1
		if err == nil {
			fd, err = takeFD(up)
		}
		pm.post(func() {
			if pl.closed || !pl.connecting || pl.b != b {
				if fd >= 0 {
					unix.Close(fd)
				}
				return
			}
			delete(pm.connecting, pl)
			pl.connecting = false
			if err != nil {
				pl.b.conns.Add(-1)
				pl.b = nil
				pm.dial(pl) // p.dial ejected b already
				return
			}
			pl.ends[1] = pumpEnd{fd: fd, l: pl, writable: true, readable: true, holdACK: p.cfg.ClientFirst}
			if err := pm.watch(&pl.ends[1]); err != nil {
				pm.end(pl)
				return
			}
			pm.connected(pl)
		})
	}()
}

// dialDone finishes a dial whose socket said writable or hung up.
func (pm *pump) dialDone(pl *plink) {
	// Writable with no error nor hang-up is a connect that succeeded (a
	// failed one says EPOLLERR): only then is SO_ERROR read, which is 0
	// for a connection the backend took and has already closed.
	if pl.ends[1].hup {
		errno, err := unix.GetsockoptInt(pl.ends[1].fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = unix.Errno(errno)
		}
		if err != nil {
			pm.dialFailed(pl, err)
			return
		}
	}
	delete(pm.connecting, pl)
	pl.connecting = false
	pl.p.reached(pl.b)
	pm.connected(pl)
}

// connected joins pl to its backend's connections and starts copying. A
// backend removed while the dial went on, whose grace is over, takes no
// connection: the next one is tried, as after a refusal.
func (pm *pump) connected(pl *plink) {
	if !pl.b.join(pl.l) {
		pm.closeEnd(&pl.ends[1])
		pl.ends[1] = pumpEnd{fd: -1, l: pl}
		pl.b.conns.Add(-1)
		pl.b = nil
		pm.dial(pl)
		return
	}
	pl.joined = true
	pm.mark(pl) // what the backend sent already was an event like any other
}

// dialFailed ejects the backend of a dial that failed and tries another.
func (pm *pump) dialFailed(pl *plink, err error) {
	delete(pm.connecting, pl)
	pl.connecting = false
	pm.closeEnd(&pl.ends[1])
	pl.ends[1] = pumpEnd{fd: -1, l: pl}
	b := pl.b
	pl.b = nil
	b.conns.Add(-1)
	pl.p.refused(b, err)
	pm.dial(pl)
}

// forward hands l, dialled by a goroutine of the proxy, to a loop, which
// copies both ways and takes l out of the proxy's and b's books when it
// ends. Where the loops cannot start, or the sockets cannot be taken
// over, the connection is copied by goroutines as elsewhere.
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
	pm.post(func() { pm.register(pl) })
	l.mu.Unlock()
}
