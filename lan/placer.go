package lan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"berth/needs"
	"berth/pipes"
)

// round is one offer of an unsatisfied instance to the eligible masters.
type round struct {
	id       uint64
	instance string
	deadline time.Time
	asked    map[string]bool // master ids offered to
	bids     map[string]pipes.Bid
}

// noBidRetry is how long an instance that got no usable bid waits before it
// is offered again, unless a master connects or frees resources first.
const noBidRetry = 2 * time.Second

// placer owns placement: it makes backed-off instances pending when due,
// re-queues the instances of masters gone for longer than MasterGrace, opens
// offer rounds and grants instances when their rounds close.
func (s *Server) placer() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
		next := s.placeOnce(time.Now())
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// placeOnce runs one pass and returns how long until the next is needed.
func (s *Server) placeOnce(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return time.Hour
	}
	next := 250 * time.Millisecond
	due := func(t time.Time) {
		if d := t.Sub(now); d > 0 && d < next {
			next = d
		}
	}
	s.expireGoneLocked(now)
	var changed []*needs.Instance
	for _, in := range s.insts {
		if in.State == needs.Starting && in.PID == 0 && !in.Removing {
			// Granted, but its master never reported the child.
			if now.Sub(in.Since) >= s.cfg.StartDeadline {
				s.sendStopLocked(in, "not started in time")
				s.failLocked(in, fmt.Sprintf("master %s did not start it within %s", in.Master, s.cfg.StartDeadline), "")
			} else {
				due(in.Since.Add(s.cfg.StartDeadline))
			}
			continue
		}
		if in.State == needs.Backoff {
			if !in.NextAttempt.After(now) {
				in.State, in.Since = needs.Pending, now.UTC()
				changed = append(changed, in)
			} else {
				due(in.NextAttempt)
			}
		}
	}
	if len(changed) > 0 {
		s.saveLocked(changed...)
	}
	for name, r := range s.rounds {
		if len(r.bids) == len(r.asked) || !now.Before(r.deadline) {
			s.decideLocked(name, r, now)
		} else {
			due(r.deadline)
		}
	}
	for _, in := range s.pendingLocked() {
		if _, open := s.rounds[in.Name]; open {
			continue
		}
		if t, ok := s.retryAt[in.Name]; ok && now.Before(t) {
			due(t)
			continue
		}
		s.offerLocked(in, now)
	}
	return next
}

// pendingLocked returns pending instances of live needs, in name order.
func (s *Server) pendingLocked() []*needs.Instance {
	var out []*needs.Instance
	for _, in := range s.insts {
		if in.State == needs.Pending && !in.Removing {
			if _, ok := s.needs[in.Need]; ok {
				out = append(out, in)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Need != out[j].Need {
			return out[i].Need < out[j].Need
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// offerLocked opens a round for in among the eligible masters.
func (s *Server) offerLocked(in *needs.Instance, now time.Time) {
	n := s.needs[in.Need]
	var eligible []*session
	for _, m := range s.masters {
		if n.Machine == "" || m.info.Name == n.Machine {
			eligible = append(eligible, m)
		}
	}
	if len(eligible) == 0 {
		why := "no master connected"
		if n.Machine != "" {
			why = fmt.Sprintf("no connected master named %q", n.Machine)
		}
		s.setReasonLocked(in, why)
		s.retryAt[in.Name] = now.Add(noBidRetry)
		return
	}
	s.round++
	r := &round{id: s.round, instance: in.Name, deadline: now.Add(s.cfg.BidWindow),
		asked: map[string]bool{}, bids: map[string]pipes.Bid{}}
	offer := &pipes.Offer{Instance: in.Name, Round: r.id, Need: *n}
	for _, m := range eligible {
		r.asked[m.info.ID] = true
		m.send(pipes.TypeOffer, offer)
	}
	s.rounds[in.Name] = r
}

// bidLocked records a master's bid and closes the round once all are in.
func (s *Server) bidLocked(masterID string, b *pipes.Bid) {
	r, ok := s.rounds[b.Instance]
	if !ok || r.id != b.Round || !r.asked[masterID] {
		return // late or stray bid
	}
	r.bids[masterID] = *b
	if len(r.bids) == len(r.asked) {
		s.kick()
	}
}

// decideLocked closes a round: it grants the instance to the best bidder
// still connected, or records why nobody could take it.
func (s *Server) decideLocked(name string, r *round, now time.Time) {
	delete(s.rounds, name)
	in, ok := s.insts[name]
	if !ok || in.State != needs.Pending || in.Removing {
		return
	}
	n, ok := s.needs[in.Need]
	if !ok {
		return
	}
	perNeed, total := map[string]int{}, map[string]int{}
	for _, o := range s.insts {
		if o.State.Placed() {
			total[o.MasterID]++
			if o.Need == in.Need {
				perNeed[o.MasterID]++
			}
		}
	}
	var best *session
	var reasons []string
	for id, b := range r.bids {
		m, ok := s.masters[id]
		if !ok {
			continue
		}
		if !b.OK {
			reasons = append(reasons, fmt.Sprintf("master %s: %s", m.info.Name, b.Reason))
			continue
		}
		if best == nil || better(m, best, in.FailedOn, perNeed, total) {
			best = m
		}
	}
	if best == nil {
		for id := range r.asked {
			if _, answered := r.bids[id]; !answered {
				if m, ok := s.masters[id]; ok {
					reasons = append(reasons, fmt.Sprintf("master %s: no bid within %s", m.info.Name, s.cfg.BidWindow))
				}
			}
		}
		slices.Sort(reasons)
		if len(reasons) == 0 {
			reasons = []string{"no master answered"}
		}
		s.setReasonLocked(in, strings.Join(reasons, "; "))
		s.retryAt[name] = now.Add(noBidRetry)
		return
	}
	delete(s.retryAt, name)
	in.State, in.Since, in.Reason = needs.Starting, now.UTC(), ""
	in.Alloc = newID()
	in.MasterID, in.Master, in.Address = best.info.ID, best.info.Name, best.info.Address
	s.saveLocked(in)
	best.send(pipes.TypeGrant, &pipes.Grant{Instance: in.Name, Alloc: in.Alloc, Need: *n})
}

// better reports whether master a is a better home than b: not the master
// where the last attempt failed, then fewer instances of this need (spread),
// then fewer instances in all, then by name.
func better(a, b *session, failedOn string, perNeed, total map[string]int) bool {
	ai, bi := a.info.ID, b.info.ID
	if (ai == failedOn) != (bi == failedOn) {
		return bi == failedOn
	}
	if perNeed[ai] != perNeed[bi] {
		return perNeed[ai] < perNeed[bi]
	}
	if total[ai] != total[bi] {
		return total[ai] < total[bi]
	}
	if a.info.Name != b.info.Name {
		return a.info.Name < b.info.Name
	}
	return ai < bi
}

func (s *Server) setReasonLocked(in *needs.Instance, why string) {
	if in.Reason != why {
		in.Reason = why
		s.saveLocked(in)
	}
}

// expireGoneLocked re-queues the instances of masters disconnected for
// longer than MasterGrace.
func (s *Server) expireGoneLocked(now time.Time) {
	for id, g := range s.gone {
		if now.Sub(g.since) < s.cfg.MasterGrace {
			continue
		}
		var changed []*needs.Instance
		for _, in := range s.insts {
			if in.MasterID != id || !in.State.Placed() {
				continue
			}
			if in.Removing {
				s.dropLocked(in)
				continue
			}
			in.Unplace()
			in.State, in.Since = needs.Pending, now.UTC()
			in.Reason = fmt.Sprintf("master %s lost (disconnected for %s)", g.name, s.cfg.MasterGrace)
			changed = append(changed, in)
		}
		if len(changed) > 0 {
			s.saveLocked(changed...)
		}
		delete(s.gone, id)
	}
}
