package ipchub

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// corkConn is a peer's socket as the websocket library sees it. While the
// peer's writer holds it, what the library writes collects in memory;
// release sends it in one write. Writes while it is not held go straight
// to the socket. All methods may be called concurrently.
type corkConn struct {
	net.Conn

	mu      sync.Mutex // Protects following; held across writes to Conn, so that they never interleave.
	holding bool
	buf     []byte
}

func (c *corkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.buf = append(c.buf, b...)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// hold starts collecting writes.
func (c *corkConn) hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = true
}

// held is the number of bytes collected.
func (c *corkConn) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// release stops collecting and writes what was collected, within timeout;
// a write that does not end in time fails with os.ErrDeadlineExceeded.
func (c *corkConn) release(timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if len(c.buf) == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Conn.Write(c.buf)
	c.Conn.SetWriteDeadline(time.Time{})
	if cap(c.buf) > 4*maxBatch {
		c.buf = nil // a frame near MaxPayload grew it: do not keep it
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// accept upgrades a connect request to a WebSocket whose socket is a
// corkConn. If the connection cannot be wrapped, cork is nil and the
// socket is the plain one.
func accept(w http.ResponseWriter, r *http.Request) (conn *websocket.Conn, cork *corkConn, err error) {
	cw := &corkResponse{ResponseWriter: w}
	conn, err = websocket.Accept(cw, r, nil)
	return conn, cw.cork, err
}

// corkResponse hands websocket.Accept, through Hijack, the connection as a
// corkConn, with the hijacked buffered writer writing to it.
type corkResponse struct {
	http.ResponseWriter
	cork *corkConn
}

func (w *corkResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http flushed the 101 response before handing the connection over.
	if brw.Writer.Buffered() != 0 {
		return nc, brw, nil
	}
	w.cork = &corkConn{Conn: nc}
	brw.Writer.Reset(w.cork)
	return w.cork, brw, nil
}

// Unwrap lets http.ResponseController reach the original writer.
func (w *corkResponse) Unwrap() http.ResponseWriter { return w.ResponseWriter }
