package ipchub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// closeReason is the status and text a peer's connection is closed with.
type closeReason struct {
	code websocket.StatusCode
	text string
}

var (
	closeNormal    = closeReason{websocket.StatusNormalClosure, ""}
	closeGoingAway = closeReason{websocket.StatusGoingAway, "berth ipc: hub closing"}
	closeReplaced  = closeReason{websocket.StatusPolicyViolation, "berth ipc: replaced by a new connection with the same id"}
)

// closeSlow is the reason a slow consumer gets.
func closeSlow(queue int) closeReason {
	return closeReason{websocket.StatusTryAgainLater, fmt.Sprintf("berth ipc: slow consumer: %d frames queued unsent", queue)}
}

// closeWriteTimeout is the reason a peer that took no frame for d gets.
func closeWriteTimeout(d time.Duration) closeReason {
	return closeReason{websocket.StatusTryAgainLater, fmt.Sprintf("berth ipc: slow consumer: a frame waited %s to be written", d)}
}

// closeOversize is the reason a peer that sent a frame over max gets.
func closeOversize(max int) closeReason {
	return closeReason{websocket.StatusMessageTooBig, fmt.Sprintf("berth ipc: frame over maxPayload (%d bytes): POST it to /{group}/send", max)}
}

// peer is one WebSocket connection of a group. Frames to it go through
// queue, which only its writer goroutine drains; enqueue never blocks.
type peer struct {
	id, group, remote string
	who               string // named by its child token, if any
	since             time.Time
	conn              *websocket.Conn
	cork              *corkConn // conn's socket, nil if accept could not wrap it
	queue             chan []byte
	stop              chan struct{} // closed by shut
	writerDone        chan struct{}

	once   sync.Once
	reason closeReason // set once, before stop is closed
}

func newPeer(id, group, remote string, conn *websocket.Conn, cork *corkConn, queueLen int) *peer {
	return &peer{
		id: id, group: group, remote: remote, since: time.Now(), conn: conn, cork: cork,
		queue: make(chan []byte, queueLen), stop: make(chan struct{}), writerDone: make(chan struct{}),
	}
}

// shut asks the writer to close the connection with r; only the first call
// counts. It reports whether this call was the first.
func (p *peer) shut(r closeReason) (first bool) {
	p.once.Do(func() {
		p.reason = r
		close(p.stop)
		first = true
	})
	return first
}

// leaving reports whether p has been shut.
func (p *peer) leaving() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// enqueue queues msg without blocking. It returns false when the peer is
// leaving or its queue is full; a full queue shuts it as a slow consumer,
// and full reports that this call did.
func (p *peer) enqueue(msg []byte) (ok, full bool) {
	select {
	case <-p.stop:
		return false, false
	default:
	}
	select {
	case p.queue <- msg:
		return true, false
	default:
		return false, p.shut(closeSlow(cap(p.queue)))
	}
}

// writeLoop writes queued frames until the peer is shut, then closes the
// connection with the reason. ctx ends when the hub cuts connections: that
// closes the connection at once, whatever write it is in.
func (p *peer) writeLoop(ctx context.Context, timeout time.Duration, onTimeout func()) {
	defer close(p.writerDone)
	cut := context.AfterFunc(ctx, func() { p.conn.CloseNow() })
	defer cut()
	for {
		select {
		case <-p.stop:
			p.close(ctx)
			return
		default:
		}
		select {
		case <-p.stop:
			p.close(ctx)
			return
		case <-ctx.Done():
			p.conn.CloseNow()
			return
		case msg := <-p.queue:
			err := p.writeBatch(msg, timeout)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil && p.shut(closeWriteTimeout(timeout)) {
					onTimeout()
				}
				p.shut(closeNormal)
				p.conn.CloseNow()
				return
			}
		}
	}
}

// maxBatch bounds the bytes the writer collects before it writes them.
const maxBatch = 32 << 10

// writeBatch writes msg, and the frames queued behind it up to maxBatch
// bytes, in one write to the socket that must end within timeout. Frames
// are written whole, each as one WebSocket message; a write of the
// websocket library on another goroutine (a pong, the close handshake)
// that comes meanwhile lands between two of them.
//
// The library flushes every frame to its connection: without the cork, each
// would be a write(2) of its own, which was a third of the hub's CPU time
// under bench/ipc.sh, and a per-frame context with a deadline another tenth.
func (p *peer) writeBatch(msg []byte, timeout time.Duration) error {
	if p.cork == nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := p.conn.Write(ctx, websocket.MessageText, msg)
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("write: %w", os.ErrDeadlineExceeded)
		}
		return err
	}
	p.cork.hold()
	for {
		// No context: the write goes to memory, and a cut closes the
		// connection (writeLoop), which ends any wait in the library.
		if err := p.conn.Write(context.Background(), websocket.MessageText, msg); err != nil {
			p.cork.release(timeout)
			return err
		}
		if p.cork.held() >= maxBatch {
			break
		}
		var ok bool
		select {
		case msg, ok = <-p.queue:
		default:
		}
		if !ok {
			break
		}
	}
	return p.cork.release(timeout)
}

// close ends the connection with the peer's reason, or at once when the
// hub is cutting connections.
func (p *peer) close(ctx context.Context) {
	if ctx.Err() != nil {
		p.conn.CloseNow()
		return
	}
	p.conn.Close(p.reason.code, p.reason.text)
}
