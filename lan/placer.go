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
	// handoff is set for a round that looks for a replacement of a running
	// instance whose master drains, rather than for a pending instance.
	handoff bool
}

// noBidRetry is how long an instance that got no usable bid waits before it
// is offered again, unless a master connects or frees resources first.
const noBidRetry = 2 * time.Second

// placer owns placement: it checks the masters' liveness, makes backed-off
// instances pending when due, re-queues the instances of lost masters,
// opens offer rounds (for pending instances and for replacements of the
// instances of draining masters) and grants instances when their rounds
// close.
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
		next := s.placeOnce(s.now())
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
	s.livenessLocked(now, due)
	var changed []*needs.Instance
	for _, in := range s.insts {
		if h := in.Handoff; h != nil && h.PID == 0 {
			if now.Sub(h.Since) >= s.cfg.StartDeadline {
				s.dropHandoffLocked(in, fmt.Sprintf("replacement on master %s did not start within %s", h.Master, s.cfg.StartDeadline), now)
			} else {
				due(h.Since.Add(s.cfg.StartDeadline))
			}
		}
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
	s.handoffsLocked(now, due)
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
	var draining []string
	for _, m := range s.masters {
		if n.Machine != "" && m.info.Name != n.Machine {
			continue
		}
		if s.isDrainingLocked(m.info.Name) {
			draining = append(draining, m.info.Name)
			continue
		}
		eligible = append(eligible, m)
	}
	if len(eligible) == 0 {
		why := "no master connected"
		switch {
		case len(draining) > 0:
			slices.Sort(draining)
			why = fmt.Sprintf("no master takes new work: draining %s", strings.Join(draining, ", "))
		case n.Machine != "":
			why = fmt.Sprintf("no connected master named %q", n.Machine)
		}
		s.setReasonLocked(in, why)
		s.retryAt[in.Name] = now.Add(noBidRetry)
		return
	}
	s.openRoundLocked(in, n, eligible, false, now)
}

// openRoundLocked offers in to the eligible masters.
func (s *Server) openRoundLocked(in *needs.Instance, n *needs.Need, eligible []*session, handoff bool, now time.Time) {
	s.round++
	r := &round{id: s.round, instance: in.Name, deadline: now.Add(s.cfg.BidWindow),
		asked: map[string]bool{}, bids: map[string]pipes.Bid{}, handoff: handoff}
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

// decideLocked closes a round: it grants the instance (or, for a handoff
// round, its replacement) to the best bidder still connected and not
// draining, or records why nobody could take it.
func (s *Server) decideLocked(name string, r *round, now time.Time) {
	delete(s.rounds, name)
	in, ok := s.insts[name]
	if !ok || in.Removing {
		return
	}
	if r.handoff && !s.wantsHandoffLocked(in) || !r.handoff && in.State != needs.Pending {
		return // moved on meanwhile
	}
	n, ok := s.needs[in.Need]
	if !ok {
		return
	}
	perNeed, total := s.loadLocked(in.Need)
	prefer, avoid := placementPreference(in, n)
	var best *session
	var reasons []string
	for id, b := range r.bids {
		m, ok := s.masters[id]
		if !ok || id == in.MasterID && r.handoff {
			continue
		}
		if s.isDrainingLocked(m.info.Name) {
			reasons = append(reasons, fmt.Sprintf("master %s: draining", m.info.Name))
			continue
		}
		if !b.OK {
			reasons = append(reasons, fmt.Sprintf("master %s: %s", m.info.Name, b.Reason))
			continue
		}
		if best == nil || better(m, best, prefer, avoid, perNeed, total) {
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
		why := strings.Join(reasons, "; ")
		if r.handoff {
			why = fmt.Sprintf("master %s is draining; no other master can take it: %s", in.Master, why)
		}
		s.setReasonLocked(in, why)
		s.retryAt[name] = now.Add(noBidRetry)
		return
	}
	delete(s.retryAt, name)
	alloc := newID()
	if r.handoff {
		in.Handoff = &needs.Handoff{Alloc: alloc, MasterID: best.info.ID, Master: best.info.Name,
			Address: best.info.Address, Since: now.UTC()}
		in.Reason = fmt.Sprintf("master %s is draining; replacement starting on master %s", in.Master, best.info.Name)
	} else {
		in.State, in.Since, in.Reason = needs.Starting, now.UTC(), ""
		in.Alloc = alloc
		in.MasterID, in.Master, in.Address = best.info.ID, best.info.Name, best.info.Address
	}
	s.saveLocked(in)
	best.send(pipes.TypeGrant, &pipes.Grant{Instance: in.Name, Alloc: alloc, Need: *n})
}

// loadLocked counts placements (handoffs included) per master: of need, and in all.
func (s *Server) loadLocked(need string) (perNeed, total map[string]int) {
	perNeed, total = map[string]int{}, map[string]int{}
	for _, o := range s.insts {
		if o.State.Placed() {
			total[o.MasterID]++
			if o.Need == need {
				perNeed[o.MasterID]++
			}
		}
		if h := o.Handoff; h != nil {
			total[h.MasterID]++
			if o.Need == need {
				perNeed[h.MasterID]++
			}
		}
	}
	return perNeed, total
}

// placementPreference applies the need's restart policy to an instance that
// failed: while its consecutive failures are within LocalAttempts it goes
// back to the master where it failed (a local restart); after that, that
// master is avoided while another bids.
func placementPreference(in *needs.Instance, n *needs.Need) (prefer, avoid string) {
	if in.FailedOn == "" || in.Failures == 0 {
		return "", ""
	}
	if in.Failures <= n.Restart.Effective().LocalAttempts {
		return in.FailedOn, ""
	}
	return "", in.FailedOn
}

// better reports whether master a is a better home than b: the preferred
// master (a local restart), not the avoided one (where the last attempts
// failed), then fewer instances of this need (spread), then fewer instances
// in all, then by name.
func better(a, b *session, prefer, avoid string, perNeed, total map[string]int) bool {
	ai, bi := a.info.ID, b.info.ID
	if prefer != "" && (ai == prefer) != (bi == prefer) {
		return ai == prefer
	}
	if avoid != "" && (ai == avoid) != (bi == avoid) {
		return bi == avoid
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
