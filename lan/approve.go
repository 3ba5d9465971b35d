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

// startedLocked records a master's report of a spawned child and starts the
// reachability check. A report for an allocation that is not the instance's
// current one is stale: the master is told to stop it.
func (s *Server) startedLocked(m *session, st *pipes.Started) {
	in := s.insts[st.Instance]
	if in == nil || in.Alloc != st.Alloc || in.MasterID != m.info.ID {
		m.send(pipes.TypeStop, &pipes.Stop{Alloc: st.Alloc, Reason: "stale allocation"})
		return
	}
	if in.State == needs.Stopping {
		s.sendStopLocked(in, in.Reason)
		return
	}
	in.PID, in.Ports, in.StartedAt = st.PID, st.Ports, st.StartedAt
	if st.Address != "" {
		in.Address = st.Address
	}
	if in.State != needs.Starting {
		in.State, in.Since = needs.Starting, time.Now().UTC()
	}
	s.saveLocked(in)
	n := s.needs[in.Need]
	if n == nil || s.closed {
		return
	}
	// The check runs without the lock: give it copies.
	name, addr, ports, protos := in.Name, in.Address, maps.Clone(in.Ports), slices.Clone(n.Protocols)
	ready := st.Ready || s.earlyReady[st.Alloc]
	delete(s.earlyReady, st.Alloc)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.approve(name, st.Alloc, ready, protos, addr, ports)
	}()
}

// readyFrom approves a child without ports as soon as it says ready.
func (s *Server) readyFrom(m *session, alloc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.byAllocLocked(alloc)
	if in == nil || in.MasterID != m.info.ID || in.State != needs.Starting {
		return
	}
	if in.PID == 0 {
		// The child spoke before its master's started report arrived.
		s.earlyReady[alloc] = true
		return
	}
	if n := s.needs[in.Need]; n != nil && len(n.Protocols) == 0 {
		s.markRunningLocked(in)
	}
}

// approve checks the child from the lanmanager's own host: every declared
// port must accept a TCP connection before StartDeadline. A child without
// ports must stay up for MinUptime (or say ready).
func (s *Server) approve(name, alloc string, ready bool, protos []needs.Protocol, addr string, ports map[needs.Protocol]int) {
	var err error
	if len(protos) == 0 {
		if !ready {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(s.cfg.MinUptime):
			}
		}
	} else {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartDeadline)
		err = checkPorts(ctx, addr, protos, ports)
		cancel()
	}
	if s.ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.insts[name]
	if in == nil || in.Alloc != alloc || in.State != needs.Starting {
		return // moved on meanwhile
	}
	if err != nil {
		s.rejectLocked(in, err.Error())
		return
	}
	s.markRunningLocked(in)
}

func (s *Server) markRunningLocked(in *needs.Instance) {
	in.State, in.Since, in.Reason = needs.Running, time.Now().UTC(), ""
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

// failLocked unplaces a failed instance and schedules its next attempt.
func (s *Server) failLocked(in *needs.Instance, why, exit string) {
	now := time.Now().UTC()
	if in.State == needs.Running && now.Sub(in.Since) >= needs.StableAfter {
		in.Failures = 0 // it ran well: start the back-off over
	}
	in.Failures++
	in.Restarts++
	delay := needs.BackoffDelay(in.Failures)
	delete(s.earlyReady, in.Alloc)
	in.FailedOn = in.MasterID
	in.Unplace()
	in.State, in.Since, in.Reason = needs.Backoff, now, why
	if exit == "" {
		exit = why
	}
	in.LastExit = exit
	in.NextAttempt = now.Add(delay)
	s.saveLocked(in)
	s.kick()
}

// exitedLocked handles a child that is gone.
func (s *Server) exitedLocked(m *session, e *pipes.Exited) {
	in := s.byAllocLocked(e.Alloc)
	if in == nil || in.MasterID != m.info.ID {
		return // stale: a newer placement exists, or it was rejected already
	}
	clear(s.retryAt) // the master has capacity again
	exit := describeExit(e)
	switch {
	case in.Removing:
		s.dropLocked(in)
		s.kick()
	case in.State == needs.Stopping:
		in.Unplace()
		in.State, in.Since, in.Reason = needs.Pending, time.Now().UTC(), ""
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

// byAllocLocked finds the instance whose current placement is alloc.
func (s *Server) byAllocLocked(alloc string) *needs.Instance {
	for _, in := range s.insts {
		if in.Alloc == alloc {
			return in
		}
	}
	return nil
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
// retrying with a delay that grows from 20 ms to 500 ms.
func checkPorts(ctx context.Context, addr string, protos []needs.Protocol, ports map[needs.Protocol]int) error {
	for _, p := range protos {
		if ports[p] == 0 {
			return fmt.Errorf("no %s port reported", p)
		}
	}
	todo := slices.Clone(protos)
	delay := 20 * time.Millisecond
	var last error
	for {
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
