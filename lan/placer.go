package lan

import (
	"cmp"
	"fmt"
	"slices"
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

// Offer limits. A master's outgoing queue (sessionQueue frames) must never
// fill with offers, or its link is dropped and nothing gets placed; and one
// placer pass must not hold the lock for long. So a master is offered at
// most maxOffers instances at a time (rounds that asked it and are still
// open), and a pass opens at most maxRoundsPerPass rounds. The rest wait
// for the next pass, which the closing rounds (or a full pass) trigger.
const (
	maxOffers        = 128
	maxRoundsPerPass = 512
)

// offerBudget is what one placer pass may still offer: rounds it may open,
// and offers each connected master (by id) may still receive. It is set at
// the start of a pass (placeOnce) and valid only during it.
type offerBudget struct {
	rounds int
	offers map[string]int
}

// budgetLocked sets the budget of a new pass from the rounds still open.
func (s *Server) budgetLocked() {
	b := offerBudget{rounds: maxRoundsPerPass, offers: make(map[string]int, len(s.masters))}
	for id := range s.masters {
		b.offers[id] = maxOffers
	}
	for _, r := range s.rounds {
		for id := range r.asked {
			if _, ok := b.offers[id]; ok {
				b.offers[id]--
			}
		}
	}
	s.budget = b
}

// offersLeftLocked reports whether the pass may open another round (or,
// with no master connected, record why it cannot).
func (s *Server) offersLeftLocked() bool {
	if s.budget.rounds <= 0 {
		return false
	}
	if len(s.budget.offers) == 0 {
		return true
	}
	for _, n := range s.budget.offers {
		if n > 0 {
			return true
		}
	}
	return false
}

// noBidRetry is how long an instance that got no usable bid waits before it
// is offered again, unless a master connects or frees resources first.
const noBidRetry = 2 * time.Second

// placer owns placement: it checks the masters' liveness, makes backed-off
// instances pending when due, re-queues the instances of lost masters,
// opens offer rounds (for pending instances and for replacements of the
// instances of draining masters) and grants instances when their rounds
// close.
//
// After each pass it rests as long as the pass took, so that it never holds
// the lock more than half the time: a pass costs time in proportion to the
// instances, and with thousands of them, a pass for every bid that closes
// a round would starve the links and the API. Wake-ups that come meanwhile
// make one pass.
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
		began := time.Now()
		next := s.placeOnce(s.now())
		rest := time.NewTimer(time.Since(began))
		select {
		case <-s.ctx.Done():
			rest.Stop()
			return
		case <-rest.C:
		}
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
	var grants []grant
	var l *loads // counted once a round closes, then kept up to date
	for name, r := range s.rounds {
		if len(r.bids) == len(r.asked) || !now.Before(r.deadline) {
			if l == nil {
				l = s.loadsLocked()
			}
			if g := s.decideLocked(name, r, now, l); g != nil {
				grants = append(grants, *g)
			}
		} else {
			due(r.deadline)
		}
	}
	s.grantLocked(grants)
	s.budgetLocked()
	defer func() { s.budget = offerBudget{} }()
	if s.offersLeftLocked() {
		for _, in := range s.pendingLocked(now, due) {
			if !s.offersLeftLocked() {
				break // the closing rounds, or the next pass, offer the rest
			}
			s.offerLocked(in, now)
		}
	}
	s.rebalanceLocked(now, due)
	s.handoffsLocked(now, due)
	if s.budget.rounds <= 0 {
		s.kick() // this pass opened all it may: run another at once
	}
	return s.uptimeLocked(time.Now(), next)
}

// pendingLocked returns the pending instances of live needs that are due
// for an offer (no round open, no retry waited for), in name order. due is
// told when the next retry is.
func (s *Server) pendingLocked(now time.Time, due func(time.Time)) []*needs.Instance {
	var out []*needs.Instance
	for _, in := range s.insts {
		if in.State != needs.Pending || in.Removing {
			continue
		}
		if _, ok := s.needs[in.Need]; !ok {
			continue
		}
		if _, open := s.rounds[in.Name]; open {
			continue
		}
		if t, ok := s.retryAt[in.Name]; ok && now.Before(t) {
			due(t)
			continue
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b *needs.Instance) int {
		if c := strings.Compare(a.Need, b.Need); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
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

// openRoundLocked offers in to the eligible masters that the pass's budget
// allows. If it allows none, no round opens: in waits for a later pass.
// Call it only during a placer pass (placeOnce).
func (s *Server) openRoundLocked(in *needs.Instance, n *needs.Need, eligible []*session, handoff bool, now time.Time) {
	if s.budget.rounds <= 0 {
		return
	}
	asked := make([]*session, 0, len(eligible))
	for _, m := range eligible {
		if s.budget.offers[m.info.ID] > 0 {
			asked = append(asked, m)
		}
	}
	if len(asked) == 0 {
		return
	}
	s.round++
	r := &round{id: s.round, instance: in.Name, deadline: now.Add(s.cfg.BidWindow),
		asked: map[string]bool{}, bids: map[string]pipes.Bid{}, handoff: handoff}
	msg, err := pipes.New(pipes.TypeOffer, &pipes.Offer{Instance: in.Name, Round: r.id, Need: *n})
	if err != nil {
		s.log.Error("encode offer", "instance", in.Name, "err", err)
		return
	}
	s.budget.rounds--
	for _, m := range asked {
		s.budget.offers[m.info.ID]--
		r.asked[m.info.ID] = true
		m.sendMsg(msg) // read-only from here on: shared by the sessions' writers
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

// grant is a decided round's grant, to send once the instance is saved.
type grant struct {
	in  *needs.Instance
	to  *session
	msg *pipes.Grant
}

// grantLocked saves the granted instances in one transaction, then sends
// the grants: an instance is persisted before its grant leaves.
func (s *Server) grantLocked(gs []grant) {
	if len(gs) == 0 {
		return
	}
	ins := make([]*needs.Instance, len(gs))
	for i, g := range gs {
		ins[i] = g.in
	}
	s.saveLocked(ins...)
	for _, g := range gs {
		g.to.send(pipes.TypeGrant, g.msg)
	}
}

// decideLocked closes a round: it grants the instance (or, for a handoff
// round, its replacement) to the best bidder still connected and not
// draining, or records why nobody could take it. The grant it returns is
// for grantLocked to save and send.
func (s *Server) decideLocked(name string, r *round, now time.Time, l *loads) *grant {
	delete(s.rounds, name)
	in, ok := s.insts[name]
	if !ok || in.Removing {
		return nil
	}
	if r.handoff && !s.wantsHandoffLocked(in) || !r.handoff && in.State != needs.Pending {
		return nil // moved on meanwhile
	}
	n, ok := s.needs[in.Need]
	if !ok {
		return nil
	}
	perNeed, total := l.perNeed[in.Need], l.total
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
		if r.handoff && s.giveUpMoveLocked(in, "no master took it: "+why) {
			return nil
		}
		if r.handoff {
			why = fmt.Sprintf("master %s is draining; no other master can take it: %s", in.Master, why)
		}
		s.setReasonLocked(in, why)
		s.retryAt[name] = now.Add(noBidRetry)
		return nil
	}
	delete(s.retryAt, name)
	l.add(in.Need, best.info.ID)
	alloc := newID()
	if r.handoff {
		in.Handoff = &needs.Handoff{Alloc: alloc, MasterID: best.info.ID, Master: best.info.Name,
			Address: best.info.Address, Since: now.UTC()}
		in.Reason = s.handoffReasonLocked(in, best.info.Name)
	} else {
		in.State, in.Since, in.Reason = needs.Starting, now.UTC(), ""
		in.Alloc = alloc
		in.MasterID, in.Master, in.Address = best.info.ID, best.info.Name, best.info.Address
	}
	return &grant{in: in, to: best, msg: &pipes.Grant{Instance: in.Name, Alloc: alloc, Need: *n}}
}

// loads counts placements (handoffs included) per master: of each need,
// and in all.
type loads struct {
	perNeed map[string]map[string]int // need → master id → count
	total   map[string]int            // master id → count
}

func (s *Server) loadsLocked() *loads {
	l := &loads{perNeed: map[string]map[string]int{}, total: map[string]int{}}
	for _, o := range s.insts {
		if o.State.Placed() {
			l.add(o.Need, o.MasterID)
		}
		if h := o.Handoff; h != nil {
			l.add(o.Need, h.MasterID)
		}
	}
	return l
}

// add counts one more placement of need on master.
func (l *loads) add(need, master string) {
	if l.perNeed[need] == nil {
		l.perNeed[need] = map[string]int{}
	}
	l.perNeed[need][master]++
	l.total[master]++
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
