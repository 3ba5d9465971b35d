package child

import "time"

// ipcEventKind says what an ipcEvent is.
type ipcEventKind int

const (
	evMessage    ipcEventKind = iota // data from a peer
	evLarge                          // get:MSGID; s is the id, fetched before delivery
	evJoin                           // s joined
	evLeave                          // s left
	evConnect                        // the client is connected
	evDisconnect                     // the connection dropped with err
)

// ipcEvent is what the reader queues for the callbacks.
type ipcEvent struct {
	kind ipcEventKind
	data []byte
	s    string
	err  error
}

// enqueue queues ev for the callbacks without waiting: when the queue is
// full, ev is dropped and counted. Only the run goroutine calls it (and
// DialIPC before that starts).
func (c *IPC) enqueue(ev ipcEvent) {
	select {
	case c.events <- ev:
		c.dropping = false
	default:
		c.dropped.Add(1)
		if !c.dropping {
			c.dropping = true
			c.log.Warn("ipc callbacks fall behind: queue full, dropping the newest messages", "queue", c.opts.QueueLen)
		}
	}
}

// deliver calls the callbacks for each queued event, in order, until
// Close.
func (c *IPC) deliver() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case ev := <-c.events:
			if c.ctx.Err() == nil {
				c.dispatch(ev)
			}
		}
	}
}

// dispatch calls the callback of ev, first fetching a large message.
func (c *IPC) dispatch(ev ipcEvent) {
	o := &c.opts
	switch ev.kind {
	case evLarge:
		start := time.Now()
		data, err := c.fetchLarge(ev.s)
		if err != nil {
			if c.ctx.Err() == nil {
				c.dropped.Add(1)
				c.log.Warn("ipc large message lost", "err", err)
			}
			return
		}
		c.log.Debug("ipc large message fetched", "bytes", len(data), "took", time.Since(start))
		c.largeReceived.Add(1)
		c.deliverMessage(data)
	case evMessage:
		c.deliverMessage(ev.data)
	case evJoin:
		if o.OnJoin != nil {
			o.OnJoin(ev.s)
		}
	case evLeave:
		if o.OnLeave != nil {
			o.OnLeave(ev.s)
		}
	case evConnect:
		if o.OnConnect != nil {
			o.OnConnect()
		}
	case evDisconnect:
		if o.OnDisconnect != nil {
			o.OnDisconnect(ev.err)
		}
	}
}

func (c *IPC) deliverMessage(data []byte) {
	c.received.Add(1)
	if c.opts.OnMessage != nil {
		c.opts.OnMessage(data)
	}
}
