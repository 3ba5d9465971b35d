package lan

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"berth/lifecycle"
	"berth/needs"
)

// maxChecks bounds the port checks that dial at the same time, over all
// allocations: each holds one slot for one attempt (its dials, one per
// declared port, in turn), so the lanmanager never has more than maxChecks
// check sockets open. Checks beyond it wait for a slot, within their
// deadline.
const maxChecks = 64

// approvals holds the semaphore of the port checks: one token per check
// dialling. Which allocations are being checked is the core's to know
// (package lifecycle).
type approvals struct {
	slots chan struct{}
}

func newApprovals() approvals {
	return approvals{slots: make(chan struct{}, maxChecks)}
}

// readyFrom approves a child without ports as soon as it says ready.
func (s *Server) readyFrom(m *session, alloc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stepLocked(lifecycle.Ready{MasterID: m.info.ID, Alloc: alloc})
}

// uptimeLocked approves the children without ports that have stayed up for
// MinUptime, and returns how long until the next one is due (limit if none).
func (s *Server) uptimeLocked(now time.Time, limit time.Duration) time.Duration {
	next := limit
	for alloc, at := range s.uptimeAt {
		if d := at.Sub(now); d > 0 {
			next = min(next, d)
			continue
		}
		delete(s.uptimeAt, alloc)
		s.stepLocked(lifecycle.UptimeElapsed{Alloc: alloc}) // unless it moved on meanwhile
	}
	return next
}

// checkPorts dials every declared port until all answer or ctx ends,
// retrying with a delay that grows from 20 ms to 500 ms. Each attempt holds
// a token of slots while it dials.
func checkPorts(ctx context.Context, slots chan struct{}, addr string, protos []needs.Protocol, ports map[needs.Protocol]int) error {
	for _, p := range protos {
		if ports[p] == 0 {
			return fmt.Errorf("no %s port reported", p)
		}
	}
	todo := slices.Clone(protos)
	delay := 20 * time.Millisecond
	var last error
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			if last == nil {
				last = fmt.Errorf("ports on %s not checked: %d checks of other children took every slot until the deadline", addr, cap(slots))
			}
			return last
		}
		var left []needs.Protocol
		for _, p := range todo {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(ports[p])))
			if err != nil {
				last = fmt.Errorf("%s port %d on %s unreachable from the lanmanager: %v", p, ports[p], addr, err)
				left = append(left, p)
				continue
			}
			c.Close()
		}
		<-slots
		if len(left) == 0 {
			return nil
		}
		todo = left
		select {
		case <-ctx.Done():
			return last
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
