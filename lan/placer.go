package lan

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"berth/lifecycle"
	"berth/needs"
	"berth/pipes"
)

// round is one offer of an unsatisfied instance to the eligible masters.
type round struct {
	id       uint64
	instance string
	opened   time.Time
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
//
// A round asks at most offerFanout masters: on a large LAN, offering every
// instance to every master cost most of the lanmanager's CPU (1,000
// masters: 63% in the simulator, docs/scale.md) for nothing, since only
// one bid wins. The masters asked are the least loaded of a random sample
// of twice as many (the instances of the need, then all instances, each
// counting the offers made in this pass), and the master where the
// instance failed last when the restart policy sends it back there.
const (
	maxOffers        = 128
	maxRoundsPerPass = 512
	offerFanout      = 8
)

// offerBudget is what one placer pass may still offer: rounds it may open,
// and offers each connected master (by id) may still receive. It is set at
// the start of a pass (placeOnce) and valid only during it.
type offerBudget struct {
	rounds int
	offers map[string]int
	open   int // masters with offers left
	// loads counts placements and this pass's offers, per master (spread).
	loads *loads
	// eligible caches eligibleLocked for the pass.
	eligible map[string]eligibility
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
	for _, n := range b.offers {
		if n > 0 {
			b.open++
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
	return len(s.budget.offers) == 0 || s.budget.open > 0
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
	next := 250 * time.Millisecond
	due := func(t time.Time) {
		if d := t.Sub(now); d > 0 && d < next {
			next = d
		}
	}
	// Two holds of the lock rather than one, so that the links and the
	// API get it in between: first liveness, deadlines and the rounds
	// that close, then the new offers.
	l, ok := s.closeRounds(now, due)
	if !ok {
		return time.Hour
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return time.Hour
	}
	s.budgetLocked()
	s.budget.loads = l // counted in the first hold, with its grants; nil: counted when needed
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
	return next
}

// closeRounds is the first hold of a placer pass: liveness, the core's
// deadlines, the children whose minimum uptime is over, and the offer
// rounds that close. It returns the loads it counted (nil if no round
// closed), and false once the server is closed.
func (s *Server) closeRounds(now time.Time, due func(time.Time)) (*loads, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	// Liveness visits every master: at most once a twentieth of a
	// heartbeat (50 ms at the default TTL), however many passes run in
	// between (under load, one every few milliseconds; at 1,000 masters
	// the visits took 4 % of the lanmanager's CPU, under the lock). A
	// master is declared lost, or pinged, that much later at most.
	// The wait is measured on the real clock, the checks on Config.Clock.
	if wait := s.heartbeat()/20 - time.Since(s.livenessRan); wait > 0 {
		due(now.Add(wait))
	} else {
		s.livenessLocked(now, due)
		s.livenessRan = time.Now()
	}
	s.core.Step(&s.fx, now, lifecycle.Tick{})
	if t := s.fx.Due; !t.IsZero() {
		due(t)
	}
	s.applyLocked()
	if d := s.uptimeLocked(time.Now(), time.Hour); d < time.Hour {
		due(now.Add(d))
	}
	var l *loads // counted once a round closes, then kept up to date
	for name, r := range s.rounds {
		if s.waitLongerLocked(r, now) {
			due(r.deadline)
			continue
		}
		if len(r.bids) == len(r.asked) || !now.Before(r.deadline) {
			if l == nil {
				l = s.loadsLocked()
			}
			if ev := s.decideLocked(name, r, l); ev != nil {
				s.stepLocked(ev)
			}
		} else {
			due(r.deadline)
		}
	}
	return l, true
}

// maxBidWindows bounds how long a round that has no bid at all waits:
// this many bid windows in all.
const maxBidWindows = 8

// waitLongerLocked gives a round one more bid window when its deadline
// has come without a single bid, while one of the masters it asked is
// still connected, up to maxBidWindows in all. Masters that answer late
// are busy, not gone (a lost master is dropped at its TTL): closing the
// round offers the instance to as many others, who are as busy, and at
// 1,000 simulated masters starved of CPU that made 40 offers per grant
// instead of 8 (docs/scale.md). A round still closes as soon as every
// master asked has bid, so the wait costs nothing when bids are on time.
func (s *Server) waitLongerLocked(r *round, now time.Time) bool {
	if len(r.bids) > 0 || now.Before(r.deadline) {
		return false
	}
	if last := r.opened.Add(maxBidWindows * s.cfg.BidWindow); !now.Before(last) {
		r.deadline = last // what the round waited, for the reasons
		return false
	}
	for id := range r.asked {
		if _, ok := s.masters[id]; ok {
			r.deadline = now.Add(s.cfg.BidWindow)
			if last := r.opened.Add(maxBidWindows * s.cfg.BidWindow); r.deadline.After(last) {
				r.deadline = last
			}
			return true
		}
	}
	return false
}

// pendingLocked returns the pending instances of live needs that are due
// for an offer (no round open, no retry waited for), in name order. due is
// told when the next retry is.
func (s *Server) pendingLocked(now time.Time, due func(time.Time)) []*needs.Instance {
	var out []*needs.Instance
	for _, in := range s.core.InState(needs.Pending) {
		if in.Removing {
			continue
		}
		if _, ok := s.core.Needs[in.Need]; !ok {
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
	n := s.core.Needs[in.Need]
	e := s.eligibleLocked(n.Machine)
	eligible, draining := e.masters, e.draining
	if len(eligible) == 0 {
		why := "no master connected"
		switch {
		case len(draining) > 0:
			slices.Sort(draining)
			why = fmt.Sprintf("no master takes new work: draining %s", strings.Join(draining, ", "))
		case n.Machine != "":
			why = fmt.Sprintf("no connected master named %q", n.Machine)
		}
		s.stepLocked(lifecycle.Unplaced{Instance: in.Name, Why: why})
		return
	}
	s.openRoundLocked(in, n, eligible, false, now)
}

// eligibility is who may take new work of needs pinned to one machine (or
// not pinned: ""), and who may not because they drain.
type eligibility struct {
	masters  []*session
	draining []string
}

// eligibleLocked returns, once per pass for each machine pin, the
// connected masters that take new work.
func (s *Server) eligibleLocked(machine string) eligibility {
	if e, ok := s.budget.eligible[machine]; ok {
		return e
	}
	var e eligibility
	for _, m := range s.masters {
		if machine != "" && m.info.Name != machine {
			continue
		}
		if s.core.Draining(m.info.Name) {
			e.draining = append(e.draining, m.info.Name)
			continue
		}
		e.masters = append(e.masters, m)
	}
	slices.SortFunc(e.masters, func(a, b *session) int { return strings.Compare(a.info.ID, b.info.ID) })
	if s.budget.eligible == nil {
		s.budget.eligible = map[string]eligibility{}
	}
	s.budget.eligible[machine] = e
	return e
}

// openRoundLocked offers in to the eligible masters that the pass's budget
// allows. If it allows none, no round opens: in waits for a later pass.
// Call it only during a placer pass (placeOnce).
func (s *Server) openRoundLocked(in *needs.Instance, n *needs.Need, eligible []*session, handoff bool, now time.Time) {
	if s.budget.rounds <= 0 {
		return
	}
	asked := s.sampleLocked(in, n, eligible)
	if len(asked) == 0 {
		return
	}
	s.round++
	r := &round{id: s.round, instance: in.Name, opened: now, deadline: now.Add(s.cfg.BidWindow),
		asked: map[string]bool{}, bids: map[string]pipes.Bid{}, handoff: handoff}
	msg, err := pipes.New(pipes.TypeOffer, &pipes.Offer{Instance: in.Name, Round: r.id, Need: *n})
	if err != nil {
		s.log.Error("encode offer", "instance", in.Name, "err", err)
		return
	}
	s.budget.rounds--
	for _, m := range asked {
		if s.budget.offers[m.info.ID]--; s.budget.offers[m.info.ID] == 0 {
			s.budget.open--
		}
		s.budget.loads.add(in.Need, m.info.ID)
		r.asked[m.info.ID] = true
		m.sendMsg(msg) // read-only from here on: shared by the sessions' writers
	}
	s.rounds[in.Name] = r
}

// sampleLocked picks the masters a round asks among the eligible ones with
// offers left in the pass: all of them up to offerFanout; beyond that, the
// least loaded of a random sample (see offerFanout).
func (s *Server) sampleLocked(in *needs.Instance, n *needs.Need, eligible []*session) []*session {
	hasOffers := func(m *session) bool { return s.budget.offers[m.info.ID] > 0 }
	var cands []*session
	if len(eligible) > 4*offerFanout {
		// Draw at random; a master drawn twice, or without offers left,
		// is drawn again, a bounded number of times.
		seen := make(map[int]bool, 2*offerFanout)
		for tries := 0; len(cands) < 2*offerFanout && tries < 8*offerFanout; tries++ {
			i := rand.IntN(len(eligible))
			if !seen[i] && hasOffers(eligible[i]) {
				cands = append(cands, eligible[i])
			}
			seen[i] = true
		}
	}
	if len(cands) < offerFanout {
		cands = cands[:0]
		for _, m := range eligible {
			if hasOffers(m) {
				cands = append(cands, m)
			}
		}
		if len(cands) <= offerFanout {
			return cands
		}
		rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		cands = cands[:min(len(cands), 2*offerFanout)]
	}
	if s.budget.loads == nil {
		s.budget.loads = s.loadsLocked()
	}
	l := s.budget.loads
	slices.SortFunc(cands, func(a, b *session) int {
		an, at := l.of(in.Need, a.info.ID)
		bn, bt := l.of(in.Need, b.info.ID)
		if c := cmp.Compare(an, bn); c != 0 {
			return c
		}
		return cmp.Compare(at, bt)
	})
	asked := cands[:min(len(cands), offerFanout)]
	if prefer, _ := placementPreference(in, n); prefer != "" && !slices.ContainsFunc(asked, func(m *session) bool { return m.info.ID == prefer }) {
		if i := slices.IndexFunc(eligible, func(m *session) bool { return m.info.ID == prefer }); i >= 0 && hasOffers(eligible[i]) {
			asked[len(asked)-1] = eligible[i]
		}
	}
	return asked
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
// draining, or records why nobody could take it. It returns the event for
// the core (nil: the round no longer applies).
func (s *Server) decideLocked(name string, r *round, l *loads) lifecycle.Event {
	delete(s.rounds, name)
	in, ok := s.core.Insts[name]
	if !ok || in.Removing {
		return nil
	}
	if r.handoff && !s.core.WantsHandoff(in) || !r.handoff && in.State != needs.Pending {
		return nil // moved on meanwhile
	}
	n, ok := s.core.Needs[in.Need]
	if !ok {
		return nil
	}
	prefer, avoid := placementPreference(in, n)
	var best *session
	var reasons []string
	for id, b := range r.bids {
		m, ok := s.masters[id]
		if !ok || id == in.MasterID && r.handoff {
			continue
		}
		if s.core.Draining(m.info.Name) {
			reasons = append(reasons, fmt.Sprintf("master %s: draining", m.info.Name))
			continue
		}
		if !b.OK {
			reasons = append(reasons, fmt.Sprintf("master %s: %s", m.info.Name, b.Reason))
			continue
		}
		if best == nil || better(m, best, prefer, avoid, in.Need, l) {
			best = m
		}
	}
	if best == nil {
		for id := range r.asked {
			if _, answered := r.bids[id]; !answered {
				if m, ok := s.masters[id]; ok {
					reasons = append(reasons, fmt.Sprintf("master %s: no bid within %s", m.info.Name, r.deadline.Sub(r.opened).Round(time.Millisecond)))
				}
			}
		}
		slices.Sort(reasons)
		if len(reasons) == 0 {
			reasons = []string{"no master answered"}
		}
		why := strings.Join(reasons, "; ")
		if r.handoff && s.giveUpMoveLocked(name, "no master took it: "+why) {
			return nil
		}
		if r.handoff {
			why = fmt.Sprintf("master %s is draining; no other master can take it: %s", in.Master, why)
		}
		return lifecycle.Unplaced{Instance: name, Why: why}
	}
	delete(s.retryAt, name)
	return lifecycle.Granted{Instance: name, Alloc: newID(), Master: best.ref(), Handoff: r.handoff}
}

// loads counts placements (handoffs included) per master for one placer
// pass: the core's counts, plus what the pass granted and offered.
type loads struct {
	core    *lifecycle.State
	perNeed map[string]map[string]int // need → master id → count added by the pass
	total   map[string]int            // master id → count added by the pass
}

func (s *Server) loadsLocked() *loads {
	return &loads{core: s.core, perNeed: map[string]map[string]int{}, total: map[string]int{}}
}

// of returns master id's counts: of the need, and in all.
func (l *loads) of(need, id string) (ofNeed, total int) {
	n, t := l.core.Placements(need, id)
	return n + l.perNeed[need][id], t + l.total[id]
}

// add counts one more placement of need on master.
func (l *loads) add(need, master string) {
	if l == nil {
		return
	}
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
func better(a, b *session, prefer, avoid, need string, l *loads) bool {
	ai, bi := a.info.ID, b.info.ID
	if prefer != "" && (ai == prefer) != (bi == prefer) {
		return ai == prefer
	}
	if avoid != "" && (ai == avoid) != (bi == avoid) {
		return bi == avoid
	}
	an, at := l.of(need, ai)
	bn, bt := l.of(need, bi)
	if an != bn {
		return an < bn
	}
	if at != bt {
		return at < bt
	}
	if a.info.Name != b.info.Name {
		return a.info.Name < b.info.Name
	}
	return ai < bi
}
