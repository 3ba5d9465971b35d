package ipchub

import (
	"context"
	"fmt"
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
	queue             chan []byte
	stop              chan struct{} // closed by shut
	writerDone        chan struct{}

	once   sync.Once
	reason closeReason // set once, before stop is closed
}

func newPeer(id, group, remote string, conn *websocket.Conn, queueLen int) *peer {
	return &peer{
		id: id, group: group, remote: remote, since: time.Now(), conn: conn,
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
// connection with the reason. ctx ends when the hub cuts connections.
func (p *peer) writeLoop(ctx context.Context, timeout time.Duration, onTimeout func()) {
	defer close(p.writerDone)
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
			wctx, cancel := context.WithTimeout(ctx, timeout)
			err := p.conn.Write(wctx, websocket.MessageText, msg)
			timedOut := wctx.Err() == context.DeadlineExceeded && ctx.Err() == nil
			cancel()
			if err != nil {
				if timedOut && p.shut(closeWriteTimeout(timeout)) {
					onTimeout()
				}
				p.shut(closeNormal)
				p.conn.CloseNow()
				return
			}
		}
	}
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
