package lan

import (
	"runtime"
	"sync"
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
	mu     sync.Mutex
	cond   *sync.Cond
	ready  []*session
	closed bool
	wg     sync.WaitGroup
}

// linkWriterCount is how many writers run: two per core the scheduler
// runs on, at least 4, so that a master whose socket takes nothing (a
// write waits until linkWriteTimeout, then the link is closed) leaves the
// other writers to go on with.
func linkWriterCount() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

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
	for range n {
		w.wg.Go(w.run)
	}
}

// stop ends the writers once the sessions they are writing are closed
// (a write to a closed session fails at once), and waits for them.
func (w *linkWriters) stop() {
	w.mu.Lock()
	w.closed = true
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
	w.ready = append(w.ready, ms...)
	if len(ms) == 1 {
		w.cond.Signal()
	} else {
		w.cond.Broadcast()
	}
	w.mu.Unlock()
}

// next takes the first ready session; nil once the writers are stopped.
func (w *linkWriters) next() *session {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.ready) == 0 && !w.closed {
		w.cond.Wait()
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

func (w *linkWriters) run() {
	var batch pipes.Batch
	turn := time.Now()
	for {
		m := w.next()
		if m == nil {
			return
		}
		m.write(&batch)
		if now := time.Now(); now.Sub(turn) >= linkWriterTurn {
			runtime.Gosched()
			turn = time.Now()
		}
	}
}
