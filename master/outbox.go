package master

import (
	"sync"
	"sync/atomic"
	"time"

	"berth/pipes"
)

// maxQueued bounds a link's outbound queue, in frames: as many as the
// lanmanager queues towards one master. A lanmanager that lets that many
// pile up is not reading; the link is dropped and the next hello, which
// lists every child and carries the exits not sent, catches it up.
const maxQueued = 4096

// outbox is one link's outbound queue. Every frame the master sends the
// lanmanager goes through it, except pings (pingLink) and log data (a log
// stream waits for the link as it reads the file, so it writes on the
// connection itself): callers push, and the link's writer (run) writes the
// frames in order. push never blocks and never touches the network, so it
// may be called under Agent.mu; no network write happens under Agent.mu.
//
// An exit that is pushed but never written, because the link went down
// first, is kept for the next hello: each frame carries the exits it
// reports, and what is left in the queue once the writer has stopped is
// handed back (drain). An exit is thus either written on the link it was
// pushed to or carried by the next hello, never both.
type outbox struct {
	conn *pipes.Conn
	// stall is how long one write may block before the link is dropped
	// (the link's TTL; set from the welcome).
	stall atomic.Int64
	wake  chan struct{} // a token when frames were queued (coalesced)
	full  chan struct{} // closed when the queue overflowed; watchLink drops the link

	mu     sync.Mutex // Protects following. A leaf.
	q      []outFrame
	closed bool // refuses pushes: overflowed, failed, or drained
}

// outFrame is a queued frame and the exits to keep if it is never written.
type outFrame struct {
	msg   *pipes.Msg
	exits []pipes.Exited
}

func newOutbox(conn *pipes.Conn) *outbox {
	o := &outbox{conn: conn, wake: make(chan struct{}, 1), full: make(chan struct{})}
	o.stall.Store(int64(DefaultLinkTTL))
	return o
}

// push queues m; exits are what m reports, kept for the next hello if m is
// never written. It reports false, and queues nothing, when the link is
// going down or the queue is full (the link is then dropped): the caller
// keeps its exits itself.
func (o *outbox) push(m *pipes.Msg, exits []pipes.Exited) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	if len(o.q) >= maxQueued {
		o.closed = true
		close(o.full)
		return false
	}
	o.q = append(o.q, outFrame{msg: m, exits: exits})
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true
}

// pushBody builds a frame of type typ, body v and id, and pushes it.
func (o *outbox) pushBody(typ string, id uint64, v any, exits []pipes.Exited) bool {
	m, err := pipes.New(typ, v)
	if err != nil {
		return false
	}
	m.ID = id
	return o.push(m, exits)
}

// pushError answers request id with err.
func (o *outbox) pushError(id uint64, err error) bool {
	return o.push(&pipes.Msg{V: pipes.Version, Type: pipes.TypeError, ID: id, Error: pipes.ErrorFrom(err)}, nil)
}

// run is the link's writer: it writes queued frames in order until the
// connection is closed, a write fails or the queue overflowed. A write
// blocked for the stall time (a lanmanager that stopped reading) closes
// the connection. The frames not written stay queued for drain.
func (o *outbox) run() {
	stuck := time.AfterFunc(time.Hour, func() { o.conn.Close() })
	stuck.Stop()
	defer stuck.Stop()
	for {
		select {
		case <-o.conn.Done():
			return
		case <-o.full:
			return
		case <-o.wake:
		}
		for {
			o.mu.Lock()
			if o.closed || len(o.q) == 0 {
				o.mu.Unlock()
				break
			}
			batch := o.q
			o.q = nil
			o.mu.Unlock()
			for i, f := range batch {
				stuck.Reset(time.Duration(o.stall.Load()))
				err := o.conn.Send(f.msg)
				stuck.Stop()
				if err != nil {
					o.mu.Lock()
					o.q = append(batch[i:len(batch):len(batch)], o.q...)
					o.closed = true
					o.mu.Unlock()
					o.conn.Close()
					return
				}
			}
		}
	}
}

// drain closes the queue for good and returns the exits of the frames
// never written. Call it once the writer has returned.
func (o *outbox) drain() []pipes.Exited {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	var out []pipes.Exited
	for _, f := range o.q {
		out = append(out, f.exits...)
	}
	o.q = nil
	return out
}
