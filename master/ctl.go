package master

import (
	"errors"
	"fmt"
	"path/filepath"

	"berth/pipes"
)

// serveControl answers requests on the master's control socket l
// (<socket dir>/master.sock, mode 0600): "ps" lists the children,
// "drivers" the drivers. It ends
// when l is closed: at shutdown, or when the runtime check replaced it
// (relistenControl).
func (a *Agent) serveControl(l *pipes.Listener) {
	for {
		conn, err := l.AcceptConn()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-a.ctx.Done():
					conn.Close()
				case <-stop:
				}
			}()
			for {
				msg, err := conn.Recv()
				if err != nil {
					return
				}
				switch msg.Type {
				case pipes.TypePS:
					conn.SendBody(pipes.TypePS, msg.ID, a.childrenWithUsage())
				case pipes.TypeDrivers:
					conn.SendBody(pipes.TypeDrivers, msg.ID, a.Drivers())
				default:
					conn.SendError(msg.ID, fmt.Errorf("%w: request %q", pipes.ErrUnsupported, msg.Type))
				}
			}
		}()
	}
}

// closeControl closes the control socket for good (at shutdown). a.ctl is
// guarded by a.mu once Open has returned, since relistenControl replaces
// it.
func (a *Agent) closeControl() {
	a.mu.Lock()
	l := a.ctl
	a.mu.Unlock()
	l.Close()
}

// relistenControl replaces a control socket whose file was deleted: the
// old listener still works but nobody can dial it. The old one is closed
// first (its Close removes the path, which must not be the new socket's),
// then a new one listens at the same path with its own serveControl.
func (a *Agent) relistenControl() error {
	a.mu.Lock()
	old, closed := a.ctl, a.closed
	a.mu.Unlock()
	if closed {
		return ErrClosed
	}
	old.Close()
	l, err := pipes.Listen(filepath.Join(a.sockDir, "master.sock"))
	if err != nil {
		return fmt.Errorf("re-open control socket: %w", err)
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	a.ctl = l
	a.wg.Add(1) // the caller's goroutine is counted too, so Wait has not returned
	a.mu.Unlock()
	go func() { defer a.wg.Done(); a.serveControl(l) }()
	return nil
}

// relistenPipe replaces a child's control socket whose file was deleted,
// as relistenControl does for the master's. The child's current
// connection, if any, is kept; when it drops, the child redials the path
// and reaches the new socket.
func (a *Agent) relistenPipe(c *child) error {
	c.mu.Lock()
	old, closed := c.pipe, c.pipeClosed
	c.mu.Unlock()
	if closed || old == nil {
		return nil
	}
	old.Close()
	l, err := listenPipe(c.pipePath)
	if err != nil {
		return fmt.Errorf("re-open pipe of %s: %w", c.instance, err)
	}
	c.mu.Lock()
	if c.pipeClosed || a.ctx.Err() != nil {
		c.mu.Unlock()
		l.Close()
		return errors.Join(ErrClosed, a.ctx.Err())
	}
	c.pipe = l
	a.wg.Add(1)
	c.mu.Unlock()
	go func() { defer a.wg.Done(); a.servePipe(c, l) }()
	return nil
}
