package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"berth/pipes"
)

// report sends an exit on the current link. An exit that cannot be sent is
// kept (up to maxUnsent) and carried by the next hello, so the lanmanager
// counts the failure even if the link was down when the child died.
func (a *Agent) report(e *pipes.Exited) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link != nil && a.link.SendBody(pipes.TypeExited, 0, e) == nil {
		return
	}
	if len(a.unsent) < maxUnsent {
		a.unsent = append(a.unsent, *e)
	}
}

const maxUnsent = 1000

// send writes a message on the current link, if there is one. Other
// messages lost while the link is down are recovered by the hello that
// follows the reconnection, which lists every child the master runs.
func (a *Agent) send(typ string, body any) {
	a.mu.Lock()
	conn := a.link
	a.mu.Unlock()
	if conn == nil {
		return
	}
	if err := conn.SendBody(typ, 0, body); err != nil {
		a.log.Debug("send", "type", typ, "err", err)
	}
}

// Linked reports whether the master is connected to the lanmanager.
func (a *Agent) Linked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.linked
}

// linkLoop keeps a link to the lanmanager, reconnecting with a back-off
// that grows from 100 ms to 2 s, plus up to half as much jitter, so that a
// master is back well within the lanmanager's 5 s grace. Children keep running while
// the link is down.
func (a *Agent) linkLoop() {
	delay := 100 * time.Millisecond
	for a.ctx.Err() == nil {
		began := time.Now()
		err := a.linkOnce()
		if a.ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*time.Second {
			delay = 100 * time.Millisecond
		}
		a.log.Info("lanmanager link down; reconnecting", "err", err, "in", delay)
		jitter := time.Duration(rand.Int64N(int64(delay)/2 + 1))
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(delay + jitter):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func (a *Agent) linkOnce() error {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	conn, err := pipes.DialWS(ctx, a.linkURL, a.cfg.Token)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	// The hello is built, sent and the link published under one lock, so a
	// child is either in the hello or its reports go on this link after it.
	a.mu.Lock()
	if err := conn.SendBody(pipes.TypeHello, 0, a.helloLocked()); err != nil {
		a.mu.Unlock()
		return err
	}
	a.unsent = nil
	a.link, a.linked = conn, true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.link, a.linked = nil, false
		a.mu.Unlock()
	}()
	stop := context.AfterFunc(a.ctx, func() { conn.Close() })
	defer stop()
	for {
		msg, err := conn.Recv()
		if err != nil {
			return err
		}
		if err := a.handle(conn, msg); err != nil {
			a.log.Warn("bad message from lanmanager", "type", msg.Type, "err", err)
			conn.SendError(msg.ID, err)
			if msg.Type == pipes.TypeError {
				return err
			}
		}
	}
}

func (a *Agent) handle(conn *pipes.Conn, msg *pipes.Msg) error {
	switch msg.Type {
	case pipes.TypeWelcome, pipes.TypePong:
	case pipes.TypePing:
		return conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID})
	case pipes.TypeOffer:
		var o pipes.Offer
		if err := msg.Decode(&o); err != nil {
			return err
		}
		return conn.SendBody(pipes.TypeBid, 0, a.bid(&o))
	case pipes.TypeGrant:
		var g pipes.Grant
		if err := msg.Decode(&g); err != nil {
			return err
		}
		a.grant(&g)
	case pipes.TypeApprove:
		var r pipes.AllocRef
		if err := msg.Decode(&r); err != nil {
			return err
		}
		if c := a.child(r.Alloc); c != nil {
			c.mu.Lock()
			c.approved = true
			c.mu.Unlock()
		}
	case pipes.TypeStop:
		var s pipes.Stop
		if err := msg.Decode(&s); err != nil {
			return err
		}
		grace := a.opts.StopGrace
		if s.GraceMS > 0 {
			grace = time.Duration(s.GraceMS) * time.Millisecond
		}
		c := a.child(s.Alloc)
		if c == nil {
			// Already gone: confirm so the lanmanager can drop its record.
			return conn.SendBody(pipes.TypeExited, 0, &pipes.Exited{Alloc: s.Alloc, Code: -1, Reason: "not running", Requested: true})
		}
		c.stop(a, s.Reason, grace)
	case pipes.TypeLogs:
		var l pipes.Logs
		if err := msg.Decode(&l); err != nil {
			return err
		}
		return a.startLogs(conn, msg.ID, &l)
	case pipes.TypeLogsCancel:
		a.cancelLogs(msg.ID)
	case pipes.TypeError:
		if msg.Error != nil {
			return msg.Error
		}
	default:
		return errors.New("unsupported message type " + msg.Type)
	}
	return nil
}

func (a *Agent) child(alloc string) *child {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.children[alloc]
}

// bid says whether this master can take the offered instance.
func (a *Agent) bid(o *pipes.Offer) *pipes.Bid {
	b := &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true}
	if o.Need.Machine != "" && o.Need.Machine != a.name {
		b.OK, b.Reason = false, "pinned to master "+o.Need.Machine
		return b
	}
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		b.OK, b.Reason = false, "shutting down"
		return b
	}
	if err := findCommand(o.Need.Command); err != nil {
		b.OK, b.Reason = false, err.Error()
		return b
	}
	ranges := a.office.Ranges()
	for _, p := range o.Need.Protocols {
		r, ok := ranges[p]
		switch {
		case !ok:
			b.OK, b.Reason = false, "no "+string(p)+" port range configured"
		case a.office.Free(p) == 0:
			b.OK, b.Reason = false, string(p)+" range "+r.String()+" exhausted"
		}
		if !b.OK {
			return b
		}
	}
	return b
}

// findCommand checks that the need's program exists and is executable on
// this machine (a path is taken as given, a bare name is looked up in PATH).
func findCommand(command []string) error {
	if len(command) == 0 {
		return errors.New("empty command")
	}
	name := os.Expand(command[0], func(k string) string { return os.Getenv(k) })
	if !strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("command %q not found in PATH", name)
		}
		return nil
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return fmt.Errorf("command %q: %v", name, errors.Unwrap(err))
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return fmt.Errorf("command %q is not an executable file", name)
	}
	return nil
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
