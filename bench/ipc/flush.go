package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// coalesceBound is what a client's flushConn collects, at most, before a
// write flushes it on the writer's own goroutine.
const coalesceBound = 64 << 10

// flushConn coalesces a client's writes the way nats.go does: each write
// goes to a buffer and wakes a flusher goroutine, which writes whatever
// collected in one write(2). coder/websocket flushes every message to its
// connection; without this each message of the berth clients would be a
// system call of its own while the NATS client's are batched (-client each
// measures that). All methods may be called concurrently.
type flushConn struct {
	net.Conn
	kick chan struct{} // cap 1: there is something to flush
	done chan struct{} // closed by Close
	once sync.Once
	wg   sync.WaitGroup // the flusher

	wmu sync.Mutex // Serialises writes to Conn.

	mu    sync.Mutex // Protects following.
	buf   []byte
	spare []byte // the other buffer, while no flush holds it
	err   error  // of the last write to Conn
}

func newFlushConn(c net.Conn) *flushConn {
	fc := &flushConn{Conn: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	fc.wg.Go(fc.flushLoop)
	return fc
}

func (c *flushConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	c.buf = append(c.buf, b...)
	full := len(c.buf) >= coalesceBound
	c.mu.Unlock()
	if full {
		return len(b), c.flush()
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (c *flushConn) flushLoop() {
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		if c.flush() != nil {
			return
		}
	}
}

// flush writes what collected.
func (c *flushConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	out := c.buf
	c.buf, c.spare = c.spare[:0], nil
	c.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	_, err := c.Conn.Write(out)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spare = out[:0]
	if err != nil {
		c.err = err
	}
	return err
}

func (c *flushConn) Close() error {
	c.once.Do(func() { close(c.done) })
	err := c.Conn.Close()
	c.wg.Wait()
	return err
}

// coalescingClient is an HTTP client whose connections are flushConns, for
// websocket.Dial.
func coalescingClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newFlushConn(c), nil
		},
		DisableCompression: true,
	}}
}
