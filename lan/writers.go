package lan

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"berth/pipes"
)

// linkWriters write the masters' outgoing queues: a few goroutines for
// every link, instead of a writer goroutine per link. With one per link, a
// placer pass that offered to hundreds of masters, or a batch written
// while hundreds of frames waited for it, made as many goroutines runnable
// at once; an API request that came next waited behind all of them for a
// core. A runtime trace of bench/sim (1,000 masters) put 60 % of the time
// goroutines spent waiting for a core on those writers.
//
// A session with frames to send is in the ready list, or held by the one
// writer writing it (session.scheduled), never both. A writer that finds a
// frame waiting for a batch not written yet parks the session on the
// commit gate, which puts it back in the list when the next batch is
// written.
type linkWriters struct {
	mu      sync.Mutex
	cond    *sync.Cond
	ready   []*session
	closed  bool
	idle    int           // writers waiting for a session
	writers []*linkWriter // running: the permanent ones, then extra ones
	extra   int           // extra writers started, ever (for the tests)
	wg      sync.WaitGroup
	// check looks, linkWriterStuck after a session found no idle writer,
	// whether every writer is stuck; armed while it is due.
	check *time.Timer
	armed bool
}

// linkWriter is one writer.
type linkWriter struct {
	extra bool         // leaves once no session is ready
	since atomic.Int64 // when its write in progress began, unix ns; 0: none
}

// linkWriterCount is how many writers run: one per core the scheduler
// runs on, at least 2. More only add goroutines to the scheduler's queue
// (two per core, at least 4, until stop 14: the API's tail a few ms
// longer in bench/sim); a master that reads nothing does not hold the
// others' frames, since extra writers start then (below).
func linkWriterCount() int { return max(2, runtime.GOMAXPROCS(0)) }

// A write waits for the master's socket to take its frames. When a
// session has been ready for linkWriterStuck with no writer idle, and
// every writer has waited that long or longer in one write, an extra
// writer starts (at most linkWritersMax writers in all), and leaves once
// no session is ready: masters that read nothing hold a writer each until
// linkWriteTimeout, not the other masters' frames.
const (
	linkWriterStuck = 100 * time.Millisecond
	linkWritersMax  = 256
)

// linkWriteTimeout is how long a write to a master may wait for its
// socket to take the frames: the master TTL, at least a second. A master
// that reads nothing for that long is disconnected, as one that lets its
// queue fill up is, and as one unheard for the TTL is lost.
func (s *Server) linkWriteTimeout() time.Duration { return max(s.cfg.MasterTTL, time.Second) }

// linkWriterTurn is how long a writer works before it lets the scheduler
// run another goroutine: a writer with sessions waiting never blocks, and
// Go does not take a core from a goroutine before 10 ms.
const linkWriterTurn = 200 * time.Microsecond

func newLinkWriters() *linkWriters {
	w := &linkWriters{}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// start runs n writers.
func (w *linkWriters) start(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range n {
		w.spawnLocked(false)
	}
}

// spawnLocked starts a writer; w.mu held.
func (w *linkWriters) spawnLocked(extra bool) {
	lw := &linkWriter{extra: extra}
	w.writers = append(w.writers, lw)
	if extra {
		w.extra++
	}
	w.wg.Go(func() { w.run(lw) })
}

// stop ends the writers once the sessions they are writing are closed
// (a write to a closed session fails at once), and waits for them.
func (w *linkWriters) stop() {
	w.mu.Lock()
	w.closed = true
	if w.check != nil {
		w.check.Stop() // one already running sees closed
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wg.Wait()
}

// schedule adds sessions to the ready list; their scheduled flag is set.
func (w *linkWriters) schedule(ms ...*session) {
	if len(ms) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ready = append(w.ready, ms...)
	switch {
	case w.idle == 1 || w.idle > 0 && len(ms) == 1:
		w.cond.Signal()
	case w.idle > 1:
		w.cond.Broadcast()
	default:
		w.armLocked()
	}
}

// armLocked makes recheck run linkWriterStuck from now, unless it is due
// already; w.mu held.
func (w *linkWriters) armLocked() {
	if w.armed || w.closed {
		return
	}
	w.armed = true
	if w.check == nil {
		w.check = time.AfterFunc(linkWriterStuck, w.recheck)
	} else {
		w.check.Reset(linkWriterStuck)
	}
}

// recheck starts an extra writer when sessions are ready, no writer is
// idle and every writer is stuck; it looks again later while sessions
// wait.
func (w *linkWriters) recheck() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if w.closed || len(w.ready) == 0 || w.idle > 0 {
		return
	}
	if len(w.writers) < linkWritersMax && w.stuckLocked() {
		w.spawnLocked(true)
	}
	w.armLocked()
}

// stuckLocked reports whether every writer has been in one write for
// linkWriterStuck or longer; w.mu held.
func (w *linkWriters) stuckLocked() bool {
	now := time.Now().UnixNano()
	for _, lw := range w.writers {
		if t := lw.since.Load(); t == 0 || now-t < int64(linkWriterStuck) {
			return false
		}
	}
	return true
}

// next takes the first ready session for lw. It returns nil once the
// writers are stopped, or for an extra writer once no session is ready
// (lw is then gone from the list).
func (w *linkWriters) next(lw *linkWriter) *session {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.ready) == 0 && !w.closed {
		if lw.extra {
			w.writers = slices.DeleteFunc(w.writers, func(o *linkWriter) bool { return o == lw })
			return nil
		}
		w.idle++
		w.cond.Wait()
		w.idle--
	}
	if w.closed {
		return nil
	}
	m := w.ready[0]
	w.ready[0] = nil
	w.ready = w.ready[1:]
	if len(w.ready) == 0 {
		w.ready = nil // let the backing array go after a burst
	}
	return m
}

func (w *linkWriters) run(lw *linkWriter) {
	var batch pipes.Batch
	turn := time.Now()
	for {
		m := w.next(lw)
		if m == nil {
			return
		}
		lw.since.Store(time.Now().UnixNano())
		m.write(&batch)
		lw.since.Store(0)
		if now := time.Now(); now.Sub(turn) >= linkWriterTurn {
			runtime.Gosched()
			turn = time.Now()
		}
	}
}

// extraStarted is how many extra writers have started.
func (w *linkWriters) extraStarted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.extra
}
