package child

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"berth/pipes"
)

// Back-off between reconnection attempts: it starts at backoffMin, doubles
// after each failed attempt up to backoffMax, and each wait is jittered by
// ±20% so that many children do not redial a restarted master in step.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// Conn is a child's connection to its master over the pipe. It reconnects by
// itself when the connection drops; see the package doc.
//
// All methods may be called concurrently.
type Conn struct {
	path string
	pid  int

	ctx    context.Context // done at Close; every owned goroutine stops on it
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // the reader and every heartbeat

	stop    chan pipes.ChildStop // buffered 1; receives the first stop request
	stopped bool                 // a stop request was delivered; used by the reader only
	events  chan Event           // buffered eventQueue; lifecycle events (mesh.go)
	dropped atomic.Uint64        // events dropped from a full queue

	mu     sync.Mutex  // Protects following.
	pc     *pipes.Conn // the live connection; nil while reconnecting
	ready  bool        // Ready was called; said again after reconnecting
	closed bool
	// meshState is the state of the last mesh.ready or mesh.change.
	meshState *pipes.MeshState
}

// Open dials the pipe named by BERTH_PIPE (see Dial). It returns ErrNoPipe
// when BERTH_PIPE is unset, that is when the program does not run under
// berth, and FromEnv's error when the environment is malformed.
func Open(ctx context.Context) (*Conn, error) {
	env, err := FromEnv()
	if err != nil {
		return nil, err
	}
	return Dial(ctx, env.Pipe)
}

// Dial connects to the master's socket at path and says child.hello with
// this process's pid. ctx bounds the dial only; the Conn and its reader
// goroutine live until Close.
func Dial(ctx context.Context, path string) (*Conn, error) {
	if path == "" {
		return nil, ErrNoPipe
	}
	c := &Conn{path: path, pid: os.Getpid(), stop: make(chan pipes.ChildStop, 1), events: make(chan Event, eventQueue)}
	pc, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.pc = pc
	c.wg.Go(func() { c.run(pc) })
	return c, nil
}

// Ready tells the master the child is ready to serve. The Conn remembers it
// and says it again on every new connection after a reconnect, so a child
// calls Ready once. While disconnected it returns an error wrapping
// ErrDisconnected, which the caller may ignore.
func (c *Conn) Ready() error {
	m := &pipes.Msg{V: pipes.Version, Type: pipes.TypeChildReady}
	c.mu.Lock()
	c.ready = true
	pc, err := c.connLocked()
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return c.sendOn(pc, m)
}

// SendStats sends one heartbeat. A zero PID is filled with this process's
// pid and a zero SampledAt with the current time. While disconnected it
// returns an error wrapping ErrDisconnected, which the caller may ignore.
func (c *Conn) SendStats(s pipes.Stats) error {
	if s.PID == 0 {
		s.PID = c.pid
	}
	if s.SampledAt.IsZero() {
		s.SampledAt = time.Now()
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("send %s: %w", pipes.TypeStats, err)
	}
	m, err := pipes.New(pipes.TypeStats, s)
	if err != nil {
		return err
	}
	c.mu.Lock()
	pc, err := c.connLocked()
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return c.sendOn(pc, m)
}

// Stop delivers the master's request to exit, once. The channel is never
// closed, not even by Close.
func (c *Conn) Stop() <-chan pipes.ChildStop { return c.stop }

// Close disconnects, stops reconnecting and the heartbeats, and waits for
// every goroutine of the Conn. It is idempotent.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	pc := c.pc
	c.pc = nil
	c.mu.Unlock()

	c.cancel(ErrClosed)
	var err error
	if pc != nil {
		err = pc.Close()
	}
	c.wg.Wait()
	return err
}

// connLocked returns the live connection or says why there is none.
func (c *Conn) connLocked() (*pipes.Conn, error) {
	switch {
	case c.closed:
		return nil, ErrClosed
	case c.pc == nil:
		return nil, ErrDisconnected
	}
	return c.pc, nil
}

// sendOn sends m on pc. A failed write means the connection is broken: pc is
// closed so that the reader notices and reconnects.
func (c *Conn) sendOn(pc *pipes.Conn, m *pipes.Msg) error {
	if err := pc.Send(m); err != nil {
		pc.Close()
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("send %s: %w: %w", m.Type, ErrDisconnected, err)
	}
	return nil
}

// connect dials the pipe and says hello.
func (c *Conn) connect(ctx context.Context) (*pipes.Conn, error) {
	pc, err := pipes.Dial(ctx, c.path)
	if err != nil {
		return nil, fmt.Errorf("dial berth pipe: %w", err)
	}
	if err := pc.SendBody(pipes.TypeChildHello, 0, pipes.ChildHello{PID: c.pid}); err != nil {
		pc.Close()
		return nil, fmt.Errorf("send %s: %w", pipes.TypeChildHello, err)
	}
	return pc, nil
}

// run is the reader goroutine: it serves each connection until it drops,
// then reconnects, until Close.
func (c *Conn) run(pc *pipes.Conn) {
	for pc != nil {
		c.serve(pc)
		c.detach(pc)
		pc = c.reconnect()
	}
}

// serve handles the master's messages on pc until pc fails.
func (c *Conn) serve(pc *pipes.Conn) {
	for {
		m, err := pc.Recv()
		if err != nil {
			// After a bad frame the stream may be out of step (a length
			// below 2 leaves bytes unread), so answer and start afresh.
			if c.ctx.Err() == nil && isFrameError(err) {
				pc.SendError(0, err)
			}
			return
		}
		c.handle(pc, m)
	}
}

// handle answers one message from the master. Send errors are left for the
// next Recv to find.
func (c *Conn) handle(pc *pipes.Conn, m *pipes.Msg) {
	switch m.Type {
	case pipes.TypePing:
		pc.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: m.ID})
	case pipes.TypeChildStop:
		var s pipes.ChildStop
		if len(m.Body) > 0 {
			if err := m.Decode(&s); err != nil {
				pc.SendError(m.ID, err)
				return
			}
		}
		if !c.stopped {
			c.stopped = true
			c.stop <- s // never blocks: the only send on a channel of one
		}
	case pipes.TypePong, pipes.TypeError:
		// Answers to nothing this side asks.
	default:
		if c.handleMesh(pc, m) {
			return
		}
		pc.SendError(m.ID, fmt.Errorf("%w: message type %q", pipes.ErrUnsupported, m.Type))
	}
}

// detach forgets pc if it is still the live connection, and closes it.
func (c *Conn) detach(pc *pipes.Conn) {
	c.mu.Lock()
	if c.pc == pc {
		c.pc = nil
	}
	c.mu.Unlock()
	pc.Close()
}

// reconnect dials with back-off until it gets a new connection, which it
// makes live, or until Close, when it returns nil.
func (c *Conn) reconnect() *pipes.Conn {
	delay := backoffMin
	for {
		t := time.NewTimer(jitter(delay))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		pc, err := c.connect(c.ctx)
		if err == nil {
			return c.attach(pc)
		}
		delay = min(2*delay, backoffMax)
	}
}

// attach makes a fresh connection live and says ready on it if Ready was
// called. It returns nil, having closed pc, if the Conn was closed meanwhile.
func (c *Conn) attach(pc *pipes.Conn) *pipes.Conn {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		pc.Close()
		return nil
	}
	c.pc = pc
	ready := c.ready
	c.mu.Unlock()
	if ready {
		// A failure shows up in the reader's next Recv.
		c.sendOn(pc, &pipes.Msg{V: pipes.Version, Type: pipes.TypeChildReady})
	}
	return pc
}

// isFrameError reports whether err is a bad frame rather than a broken
// connection.
func isFrameError(err error) bool {
	return errors.Is(err, pipes.ErrBadFrame) || errors.Is(err, pipes.ErrUnsupported) || errors.Is(err, pipes.ErrFrameTooLarge)
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	if d < 5 {
		return d
	}
	return d - d/5 + rand.N(2*d/5)
}
