package lan

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"berth/needs"
	"berth/pipes"
)

// maxChecks bounds the port checks that dial at the same time, over all
// allocations: each holds one slot for one attempt (its dials, one per
// declared port, in turn), so the lanmanager never has more than maxChecks
// check sockets open. Checks beyond it wait for a slot, within their
// deadline.
const maxChecks = 64

// approvals tracks the approvals under way. Its maps are guarded by
// Server.mu; slots is a semaphore used without it.
type approvals struct {
	// checking holds the allocations whose port check runs: one check per
	// allocation at a time.
	checking map[string]bool
	// uptime holds the allocations without ports that wait out MinUptime,
	// with the instance and when (time.Now, not Config.Clock) they are due.
	uptime map[string]uptimeWait
	// slots has one token per check dialling.
	slots chan struct{}
}

type uptimeWait struct {
	instance string
	at       time.Time
}

func newApprovals() approvals {
	return approvals{checking: map[string]bool{}, uptime: map[string]uptimeWait{}, slots: make(chan struct{}, maxChecks)}
}

// startedLocked records a master's report of a spawned child and starts its
// approval. A report for an allocation that is neither the instance's
// current placement nor its handoff on that master is stale: the master is
// told to stop it. A report for an allocation that is approved already, or
// whose approval is under way, changes nothing (but a ready one may approve
// a child without ports at once): each allocation is checked once, however
// many times it is reported. A report whose address is not the one the
// master registered with is refused: the lanmanager only ever dials a
// master's registered address.
func (s *Server) startedLocked(m *session, st *pipes.Started) {
	in, handoff := s.insts[st.Instance], false
	switch {
	case in == nil:
	case in.Alloc == st.Alloc:
	case in.Handoff != nil && in.Handoff.Alloc == st.Alloc:
		handoff = true
	default:
		in = nil // the instance is placed under another allocation now
	}
	switch {
	case in == nil,
		handoff && in.Handoff.MasterID != m.info.ID,
		!handoff && in.MasterID != m.info.ID:
		m.send(pipes.TypeStop, &pipes.Stop{Alloc: st.Alloc, Reason: "stale allocation", GraceMS: int(s.cfg.StopGrace / time.Millisecond)})
		return
	case !handoff && in.State == needs.Stopping:
		s.sendStopLocked(in, in.Reason)
		return
	case st.Address != "" && st.Address != m.info.Address:
		err := &needs.FieldError{Field: "address", Msg: fmt.Sprintf("%q is not the address master %s registered with (%s)",
			st.Address, m.info.Name, m.info.Address)}
		m.log.Warn("bad message from master", "type", pipes.TypeStarted, "err", err)
		m.sendMsg(&pipes.Msg{V: pipes.Version, Type: pipes.TypeError, Error: pipes.ErrorFrom(fmt.Errorf("started: %w", err))})
		return
	case !handoff && in.State == needs.Running:
		return // approved already
	}
	n := s.needs[in.Need]
	if s.appr.checking[st.Alloc] {
		return // its check is under way
	}
	if _, waiting := s.appr.uptime[st.Alloc]; waiting {
		if st.Ready && n != nil && len(n.Protocols) == 0 {
			delete(s.appr.uptime, st.Alloc)
			s.approvedLocked(in, st.Alloc)
		}
		return
	}
	addr := m.info.Address
	if handoff {
		h := in.Handoff
		h.PID, h.Ports, h.StartedAt, h.Address = st.PID, st.Ports, st.StartedAt, addr
	} else {
		in.PID, in.Ports, in.StartedAt, in.Address = st.PID, st.Ports, st.StartedAt, addr
		if in.State != needs.Starting {
			in.State, in.Since = needs.Starting, s.now().UTC()
		}
	}
	ready := st.Ready || s.earlyReady[st.Alloc]
	delete(s.earlyReady, st.Alloc)
	switch {
	case n == nil || s.closed:
		s.saveLocked(in)
	case len(n.Protocols) == 0 && ready:
		s.approvedLocked(in, st.Alloc) // saves
	case len(n.Protocols) == 0:
		s.saveLocked(in)
		s.appr.uptime[st.Alloc] = uptimeWait{instance: in.Name, at: time.Now().Add(s.cfg.MinUptime)}
		s.kick()
	default:
		s.saveLocked(in)
		s.appr.checking[st.Alloc] = true
		// The check runs without the lock: give it copies.
		name, ports, protos := in.Name, maps.Clone(st.Ports), slices.Clone(n.Protocols)
		s.wg.Go(func() { s.approve(name, st.Alloc, protos, addr, ports) })
	}
}

// readyFrom approves a child without ports as soon as it says ready.
func (s *Server) readyFrom(m *session, alloc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, handoff := s.allocLocked(alloc)
	if in == nil {
		return
	}
	pid := in.PID
	if handoff {
		if in.Handoff.MasterID != m.info.ID {
			return
		}
		pid = in.Handoff.PID
	} else if in.MasterID != m.info.ID || in.State != needs.Starting {
		return
	}
	if pid == 0 {
		// The child spoke before its master's started report arrived.
		s.earlyReady[alloc] = true
		return
	}
	if n := s.needs[in.Need]; n != nil && len(n.Protocols) == 0 {
		delete(s.appr.uptime, alloc)
		s.approvedLocked(in, alloc)
	}
}

// uptimeLocked approves the children without ports that have stayed up for
// MinUptime, and returns how long until the next one is due (limit if none).
func (s *Server) uptimeLocked(now time.Time, limit time.Duration) time.Duration {
	next := limit
	for alloc, w := range s.appr.uptime {
		if d := w.at.Sub(now); d > 0 {
			next = min(next, d)
			continue
		}
		delete(s.appr.uptime, alloc)
		if in := s.insts[w.instance]; in != nil {
			s.approvedLocked(in, alloc) // unless it moved on meanwhile
		}
	}
	return next
}

// approve checks a child with ports from the lanmanager's own host: every
// declared port must accept a TCP connection before StartDeadline.
func (s *Server) approve(name, alloc string, protos []needs.Protocol, addr string, ports map[needs.Protocol]int) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartDeadline)
	err := checkPorts(ctx, s.appr.slots, addr, protos, ports)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.appr.checking, alloc)
	if s.ctx.Err() != nil {
		return
	}
	in := s.insts[name]
	if in == nil {
		return
	}
	switch {
	case in.Alloc == alloc && in.State == needs.Starting:
		if err != nil {
			s.rejectLocked(in, err.Error())
			return
		}
		s.markRunningLocked(in)
	case in.Handoff != nil && in.Handoff.Alloc == alloc:
		if err != nil {
			s.dropHandoffLocked(in, fmt.Sprintf("replacement on master %s rejected: %v", in.Handoff.Master, err), s.now())
			return
		}
		s.handoffApprovedLocked(in)
	}
	// Otherwise the placement moved on meanwhile: the result is stale.
}

// approvedLocked approves alloc, in's placement or its handoff, if it is
// still waiting for approval.
func (s *Server) approvedLocked(in *needs.Instance, alloc string) {
	switch {
	case in.Alloc == alloc && in.State == needs.Starting:
		s.markRunningLocked(in)
	case in.Handoff != nil && in.Handoff.Alloc == alloc:
		s.handoffApprovedLocked(in)
	}
}

func (s *Server) markRunningLocked(in *needs.Instance) {
	in.State, in.Since, in.Reason = needs.Running, s.now().UTC(), ""
	// The back-off's fields belong to the last failure: a running instance
	// shows none (failLocked sets them again on the next failure; Failures
	// is the streak, kept until ResetAfter of good running).
	in.NextAttempt, in.FailedOn = time.Time{}, ""
	s.saveLocked(in)
	if m, ok := s.masters[in.MasterID]; ok {
		m.send(pipes.TypeApprove, &pipes.AllocRef{Alloc: in.Alloc})
	}
}

// rejectLocked stops a child that failed its check and backs the instance off.
func (s *Server) rejectLocked(in *needs.Instance, why string) {
	s.sendStopLocked(in, "rejected: "+why)
	s.failLocked(in, "rejected: "+why, "")
}

// failLocked unplaces a failed instance and schedules its next attempt by
// the need's restart policy. If a replacement (handoff) is under way, the
// instance moves to it instead.
func (s *Server) failLocked(in *needs.Instance, why, exit string) {
	now := s.now().UTC()
	if exit == "" {
		exit = why
	}
	in.LastExit = exit
	delete(s.earlyReady, in.Alloc)
	if in.Promote(false, in.Since) {
		in.Reason = why + "; moved to its replacement on master " + in.Master
		s.saveLocked(in)
		s.kick()
		return
	}
	var pol *needs.RestartPolicy
	if n := s.needs[in.Need]; n != nil {
		pol = n.Restart
	}
	if in.State == needs.Running && now.Sub(in.Since) >= time.Duration(pol.Effective().ResetAfter) {
		in.Failures = 0 // it ran well: start the back-off over
	}
	in.Failures++
	in.Restarts++
	in.FailedOn = in.MasterID
	in.Unplace()
	in.State, in.Since, in.Reason = needs.Backoff, now, why
	in.NextAttempt = now.Add(pol.Backoff(in.Failures))
	s.saveLocked(in)
	s.kick()
}

// exitedLocked handles a child that is gone.
func (s *Server) exitedLocked(m *session, e *pipes.Exited) {
	if r, ok := s.retiring[e.Alloc]; ok && r.masterID == m.info.ID {
		delete(s.retiring, e.Alloc) // an allocation a handoff replaced: stopped as asked
		s.kick()
		return
	}
	in, handoff := s.allocLocked(e.Alloc)
	if in == nil {
		return // stale: a newer placement exists, or it was rejected already
	}
	exit := describeExit(e)
	if handoff {
		if h := in.Handoff; h.MasterID == m.info.ID {
			s.forgetHandoffLocked(in, fmt.Sprintf("replacement on master %s exited: %s", h.Master, exit), s.now())
		}
		return
	}
	if in.MasterID != m.info.ID {
		return
	}
	clear(s.retryAt) // the master has capacity again
	switch {
	case in.Removing:
		s.dropLocked(in)
		s.kick()
	case in.State == needs.Stopping:
		in.Unplace()
		in.State, in.Since, in.Reason = needs.Pending, s.now().UTC(), ""
		in.LastExit = exit
		s.saveLocked(in)
		s.kick()
	default:
		why := "exited: " + exit
		if e.Reason != "" {
			why = e.Reason
		}
		s.failLocked(in, why, exit)
	}
}

// allocLocked finds the instance that alloc places: as its current
// placement, or (handoff true) as its handoff.
func (s *Server) allocLocked(alloc string) (in *needs.Instance, handoff bool) {
	for _, in := range s.insts {
		if in.Alloc == alloc {
			return in, false
		}
		if in.Handoff != nil && in.Handoff.Alloc == alloc {
			return in, true
		}
	}
	return nil, false
}

func describeExit(e *pipes.Exited) string {
	switch {
	case e.Signal != "":
		return "signal " + e.Signal
	case e.Code >= 0:
		return "exit code " + strconv.Itoa(e.Code)
	case e.Reason != "":
		return e.Reason
	}
	return "gone"
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
