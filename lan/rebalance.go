package lan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"berth/needs"
)

// Rebalancing evens out how a need's instances spread over the masters
// that may take them (connected, not draining, the need's machine if it is
// pinned). A master that comes back, or is undrained, gets only new work;
// rebalancing moves running instances to it.
//
// A move is a handoff, the drain's machinery, asked for one instance: a
// replacement is placed on a master that holds at least two instances of
// the need fewer than the instance's master, started and approved, and only
// then is the old allocation stopped. So the need never runs fewer than it
// asks for. Each need has at most one move under way; the next is planned
// once it ends, until the spread differs by at most one instance.
//
// The requests (and the moves under way) live in memory only: a restart of
// the lanmanager forgets them. A replacement already granted is persisted
// with its instance, as every handoff is, and completes or is dropped as
// usual.

// Rebalance is what a rebalance request answers for one need: where its
// instances run, and what will move.
type Rebalance struct {
	Need string `json:"need"`
	// Spread counts the need's placed instances on each master that may
	// take them, by master name.
	Spread map[string]int `json:"spread"`
	// Moves are the moves planned to even the spread, in order; they run
	// one at a time. Empty when nothing moves.
	Moves []Move `json:"moves"`
	// Moving is the instance that moves now, if any.
	Moving string `json:"moving,omitempty"`
	// Note says why nothing moves, when nothing does.
	Note string `json:"note,omitempty"`
}

// Move is one planned move of an instance, by master name.
type Move struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Event kinds of rebalancing.
const (
	EventNeedRebalance  = "need.rebalance"  // a rebalance was asked for (by hand, or by AutoRebalance)
	EventNeedRebalanced = "need.rebalanced" // it ended: the spread is even, or a move failed
	EventMoveStarted    = "move.started"    // one instance starts to move
	EventMoveEnded      = "move.ended"      // it moved, or stays where it runs (message says which)
)

// move is a rebalance move under way.
type move struct {
	need     string
	from     string          // id of the master the instance leaves
	fromName string          // its name
	to       map[string]bool // ids of the masters that may take it
}

// rebalancer is the rebalancing state. Its maps are guarded by Server.mu.
type rebalancer struct {
	moves  map[string]*move     // instance → its move under way
	wanted map[string]bool      // needs to even out, until even or a move fails
	uneven map[string]time.Time // need → since when its spread is uneven (AutoRebalance)
}

func newRebalancer() rebalancer {
	return rebalancer{moves: map[string]*move{}, wanted: map[string]bool{}, uneven: map[string]time.Time{}}
}

// nextMove chooses the next move to even a spread (placed instances per
// master): from the most loaded master (the lowest key among equals) to
// any master that holds at least two fewer, listed least loaded first. ok
// is false when the spread differs by at most one instance.
func nextMove(spread map[string]int) (from string, to []string, ok bool) {
	keys := slices.Sorted(maps.Keys(spread))
	for _, k := range keys {
		if from == "" || spread[k] > spread[from] {
			from = k
		}
	}
	for _, k := range keys {
		if spread[k] <= spread[from]-2 {
			to = append(to, k)
		}
	}
	slices.SortStableFunc(to, func(a, b string) int { return cmp.Compare(spread[a], spread[b]) })
	return from, to, len(to) > 0
}

// planMoves lists the moves that even a spread, each to the least loaded
// master, as the placer's choice (fewest of the need first) would make
// them.
func planMoves(spread map[string]int) []Move {
	s := maps.Clone(spread)
	moves := []Move{}
	for {
		from, to, ok := nextMove(s)
		if !ok {
			return moves
		}
		s[from]--
		s[to[0]]++
		moves = append(moves, Move{From: from, To: to[0]})
	}
}

// RebalanceNeed asks for the need's instances to be spread evenly, and
// answers what will move. Unknown needs are needs.ErrNotFound.
func (s *Server) RebalanceNeed(name string) (*Rebalance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if _, ok := s.core.Needs[name]; !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	return s.requestRebalanceLocked(name, "asked for"), nil
}

// RebalanceAll is RebalanceNeed for every need, in name order.
func (s *Server) RebalanceAll() ([]*Rebalance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := []*Rebalance{}
	for _, name := range slices.Sorted(maps.Keys(s.core.Needs)) {
		out = append(out, s.requestRebalanceLocked(name, "asked for"))
	}
	return out, nil
}

// requestRebalanceLocked plans a need's rebalance and, if anything is to
// move, starts it.
func (s *Server) requestRebalanceLocked(name, why string) *Rebalance {
	sp := s.spreadsLocked()
	rb := s.planLocked(name, sp)
	if len(rb.Moves) == 0 && rb.Moving == "" {
		return rb
	}
	if !s.reb.wanted[name] {
		s.reb.wanted[name] = true
		delete(s.reb.uneven, name)
		s.publishLocked(Event{Time: time.Now(), Kind: EventNeedRebalance, Need: name,
			Message: fmt.Sprintf("%s: %d move(s) planned (%s)", why, len(rb.Moves), describeSpread(rb.Spread))})
		s.log.Info("rebalancing need", "need", name, "moves", len(rb.Moves), "why", why)
	}
	s.kick()
	return rb
}

// planLocked is the answer to a rebalance request of need name.
func (s *Server) planLocked(name string, sp spreads) *Rebalance {
	rb := &Rebalance{Need: name, Spread: map[string]int{}, Moves: []Move{}}
	for id, c := range sp.counts[name] {
		rb.Spread[sp.names[id]] = c
	}
	for inst, mv := range s.reb.moves {
		if mv.need == name {
			rb.Moving = inst
		}
	}
	n := s.core.Needs[name]
	switch {
	case len(rb.Spread) < 2 && n.Machine != "":
		rb.Note = fmt.Sprintf("pinned to master %s", n.Machine)
	case len(rb.Spread) < 2:
		rb.Note = fmt.Sprintf("%d master(s) may take its instances (connected, not draining)", len(rb.Spread))
	default:
		rb.Moves = planMoves(rb.Spread)
		if len(rb.Moves) == 0 {
			rb.Note = "even: no master holds two more than another"
		}
	}
	return rb
}

// spreads counts, for every need, its placed instances (not being removed)
// on each master that may take it, by master id. A need with a handoff
// under way is busy: a drain or a move changes its spread.
type spreads struct {
	counts map[string]map[string]int // need → master id → instances
	names  map[string]string         // master id → name
	busy   map[string]bool           // needs with a handoff under way
}

func (s *Server) spreadsLocked() spreads {
	sp := spreads{counts: map[string]map[string]int{}, names: map[string]string{}, busy: map[string]bool{}}
	var free []string // eligible for an unpinned need
	byName := map[string]string{}
	for id, m := range s.masters {
		if !s.core.Draining(m.info.Name) {
			free = append(free, id)
			byName[m.info.Name] = id
			sp.names[id] = m.info.Name
		}
	}
	for name, n := range s.core.Needs {
		c := map[string]int{}
		if n.Machine == "" {
			for _, id := range free {
				c[id] = 0
			}
		} else if id, ok := byName[n.Machine]; ok {
			c[id] = 0
		}
		sp.counts[name] = c
	}
	for _, in := range s.core.Insts {
		c := sp.counts[in.Need]
		if c == nil || in.Removing {
			continue
		}
		if in.Handoff != nil {
			sp.busy[in.Need] = true
		}
		if _, ok := c[in.MasterID]; ok && in.State.Placed() {
			c[in.MasterID]++
		}
	}
	return sp
}

// rebalanceLocked runs on every placer pass, before the handoff rounds
// open: it checks the moves under way, starts the next move of each need
// being rebalanced, and, with AutoRebalance, starts rebalancing the needs
// whose spread has been uneven for RebalanceAfter.
func (s *Server) rebalanceLocked(now time.Time, due func(time.Time)) {
	r := &s.reb
	if len(r.moves) == 0 && len(r.wanted) == 0 && len(r.uneven) == 0 && !s.cfg.AutoRebalance {
		return
	}
	sp := s.spreadsLocked()
	for _, name := range slices.Sorted(maps.Keys(r.moves)) {
		s.checkMoveLocked(name, r.moves[name], sp)
	}
	for need := range r.wanted {
		if _, ok := s.core.Needs[need]; !ok {
			delete(r.wanted, need)
		}
	}
	for need := range r.uneven {
		if _, ok := s.core.Needs[need]; !ok || !s.cfg.AutoRebalance {
			delete(r.uneven, need)
		}
	}
	if s.cfg.AutoRebalance {
		for _, need := range slices.Sorted(maps.Keys(sp.counts)) {
			if r.wanted[need] {
				continue
			}
			if _, _, ok := nextMove(sp.counts[need]); !ok {
				delete(r.uneven, need)
				continue
			}
			since, seen := r.uneven[need]
			switch {
			case !seen:
				r.uneven[need] = now
				due(now.Add(s.cfg.RebalanceAfter))
			case now.Sub(since) >= s.cfg.RebalanceAfter:
				s.requestRebalanceLocked(need, fmt.Sprintf("uneven for %s", s.cfg.RebalanceAfter))
			default:
				due(since.Add(s.cfg.RebalanceAfter))
			}
		}
	}
	busy := map[string]bool{}
	for _, mv := range r.moves {
		busy[mv.need] = true
	}
	var start []string
	for _, need := range slices.Sorted(maps.Keys(r.wanted)) {
		if !busy[need] && !sp.busy[need] {
			start = append(start, need)
		}
	}
	s.startMovesLocked(start, sp)
}

// checkMoveLocked ends a move whose instance moved on, and refreshes the
// masters that may take one still waiting for its round.
func (s *Server) checkMoveLocked(name string, mv *move, sp spreads) {
	in := s.core.Insts[name]
	switch {
	case in == nil || in.Removing:
		s.endMoveLocked(name, mv, "it is being removed", false)
	case in.MasterID != mv.from:
		if in.MasterID == "" {
			s.endMoveLocked(name, mv, fmt.Sprintf("it left master %s (%s)", mv.fromName, in.State), false)
		} else {
			s.endMoveLocked(name, mv, fmt.Sprintf("moved from master %s to master %s", mv.fromName, in.Master), true)
		}
	case s.core.Draining(in.Master):
		s.endMoveLocked(name, mv, fmt.Sprintf("master %s drains: the drain moves it", mv.fromName), false)
	case in.Handoff != nil:
		// Its replacement starts.
	case in.State != needs.Running:
		s.endMoveLocked(name, mv, fmt.Sprintf("it is %s on master %s", in.State, mv.fromName), false)
	case s.masters[mv.from] == nil:
		s.endMoveLocked(name, mv, fmt.Sprintf("master %s is not connected", mv.fromName), false)
	default:
		if _, open := s.rounds[name]; open {
			return
		}
		c := sp.counts[in.Need]
		mv.to = map[string]bool{}
		for id, n := range c {
			if id != mv.from && n <= c[mv.from]-2 {
				mv.to[id] = true
			}
		}
		if len(mv.to) == 0 {
			s.endMoveLocked(name, mv, "the spread is even meanwhile", false)
		}
	}
}

// startMovesLocked starts the next move of each of the needs (being
// rebalanced, none under way), or ends a need's rebalance once its spread
// is even. The instance that moves is the running one with the highest
// index on the most loaded master, without a handoff or an open round; if
// none runs there yet, the next pass looks again.
func (s *Server) startMovesLocked(start []string, sp spreads) {
	todo := map[string]*move{}
	targets := map[string][]string{}
	for _, need := range start {
		c := sp.counts[need]
		from, to, ok := nextMove(c)
		if !ok {
			delete(s.reb.wanted, need)
			s.publishLocked(Event{Time: time.Now(), Kind: EventNeedRebalanced, Need: need,
				Message: "even: " + describeSpread(namedSpread(c, sp.names))})
			s.log.Info("need rebalanced", "need", need)
			continue
		}
		mv := &move{need: need, from: from, fromName: sp.names[from], to: map[string]bool{}}
		for _, id := range to {
			mv.to[id] = true
			targets[need] = append(targets[need], sp.names[id])
		}
		todo[need] = mv
	}
	if len(todo) == 0 {
		return
	}
	picks := map[string]*needs.Instance{}
	for _, in := range s.core.Insts {
		mv := todo[in.Need]
		if mv == nil || in.MasterID != mv.from || in.State != needs.Running || in.Removing || in.Handoff != nil {
			continue
		}
		if _, open := s.rounds[in.Name]; open {
			continue
		}
		if p := picks[in.Need]; p == nil || in.Index > p.Index {
			picks[in.Need] = in
		}
	}
	for _, need := range slices.Sorted(maps.Keys(picks)) {
		pick, mv := picks[need], todo[need]
		s.reb.moves[pick.Name] = mv
		s.core.Moving[pick.Name] = mv.from
		delete(s.retryAt, pick.Name)
		s.publishLocked(Event{Time: time.Now(), Kind: EventMoveStarted, Need: need, Instance: pick.Clone(),
			Message: fmt.Sprintf("%s: moving off master %s (%s) to %s", pick.Name, mv.fromName,
				describeSpread(namedSpread(sp.counts[need], sp.names)), strings.Join(targets[need], " or "))})
		s.log.Info("rebalance move", "instance", pick.Name, "from", mv.fromName, "to", targets[need])
	}
}

// endMoveLocked forgets a move and says how it ended. A move that did not
// happen ends its need's rebalance: it is not tried again until asked (or,
// with AutoRebalance, until the spread has been uneven for RebalanceAfter
// again).
func (s *Server) endMoveLocked(name string, mv *move, how string, moved bool) {
	delete(s.reb.moves, name)
	delete(s.core.Moving, name)
	e := Event{Time: time.Now(), Kind: EventMoveEnded, Need: mv.need, Message: name + ": " + how}
	if in := s.core.Insts[name]; in != nil {
		e.Instance = in.Clone()
	}
	s.publishLocked(e)
	if moved {
		s.log.Info("rebalance move done", "instance", name, "how", how)
	} else {
		s.log.Warn("rebalance move ended without moving", "instance", name, "why", how)
		if s.reb.wanted[mv.need] {
			delete(s.reb.wanted, mv.need)
			s.publishLocked(Event{Time: time.Now(), Kind: EventNeedRebalanced, Need: mv.need,
				Message: fmt.Sprintf("stopped: %s did not move: %s", name, how)})
		}
	}
	s.kick()
}

// moveOnlyLocked reports whether in wants a handoff for a rebalance move
// only (its master does not drain).
func (s *Server) moveOnlyLocked(in *needs.Instance) bool {
	mv := s.reb.moves[in.Name]
	return mv != nil && mv.from == in.MasterID && !s.core.Draining(in.Master)
}

// mayTakeLocked reports whether master m may take in's replacement: any
// master for a drain, one that holds two fewer of the need for a move.
func (s *Server) mayTakeLocked(in *needs.Instance, m *session) bool {
	return !s.moveOnlyLocked(in) || s.reb.moves[in.Name].to[m.info.ID]
}

// giveUpMoveLocked ends the move of the instance of that name, if it has
// one and its master does not drain, because no replacement could be
// placed or it failed; it reports whether it did. The instance keeps
// running where it is.
func (s *Server) giveUpMoveLocked(name, why string) bool {
	in := s.core.Insts[name]
	if in == nil || !s.moveOnlyLocked(in) {
		return false
	}
	s.endMoveLocked(name, s.reb.moves[name], "stays on master "+in.Master+": "+why, false)
	return true
}

// moveDoneLocked ends the move of the instance of that name once its
// replacement took over from master fromID.
func (s *Server) moveDoneLocked(name, fromID, fromName string) {
	if mv := s.reb.moves[name]; mv != nil && mv.from == fromID {
		s.endMoveLocked(name, mv, fmt.Sprintf("moved from master %s to master %s", fromName, s.core.Insts[name].Master), true)
	}
}

// namedSpread keys a spread by master name.
func namedSpread(c map[string]int, names map[string]string) map[string]int {
	out := make(map[string]int, len(c))
	for id, n := range c {
		out[names[id]] = n
	}
	return out
}

// describeSpread reads "m1 6, m2 0".
func describeSpread(sp map[string]int) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(sp)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, sp[name]))
	}
	if len(parts) == 0 {
		return "no master"
	}
	return strings.Join(parts, ", ")
}
