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

// Drain marks the master of that name as draining, persistently: it gets
// no offers, and each of its running instances is started again on another
// master (a handoff) before its old allocation is stopped. It answers the
// master's entry. Draining a draining master changes nothing. A name that
// is neither connected, recently seen, holding an instance, nor draining is
// needs.ErrNotFound.
func (s *Server) Drain(name string) (*needs.Master, error) {
	return s.setDrain(name, true)
}

// Undrain ends a drain: the master gets offers again, and replacements
// started for its instances are cancelled (stopped) unless they already
// took over.
func (s *Server) Undrain(name string) (*needs.Master, error) {
	return s.setDrain(name, false)
}

func (s *Server) setDrain(name string, on bool) (*needs.Master, error) {
	if err := needs.ValidateName("master", name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if !s.knownMasterLocked(name) {
		return nil, fmt.Errorf("master %q: %w (never seen: not connected and holding no instance)", name, needs.ErrNotFound)
	}
	_, was := s.drained[name]
	if was != on {
		now := s.now().UTC()
		ch := &Change{}
		if on {
			ch.PutDrained = map[string]time.Time{name: now}
		} else {
			ch.DeleteDrained = []string{name}
		}
		if err := s.store.Apply(ch); err != nil {
			return nil, fmt.Errorf("persist drain of master %q: %w", name, err)
		}
		kind := EventMasterUndrain
		if on {
			s.drained[name] = now
			kind = EventMasterDrain
			s.log.Info("master draining", "master", name)
		} else {
			delete(s.drained, name)
			s.undrainLocked(name)
			s.log.Info("master undrained", "master", name)
		}
		e := s.masterEntryLocked(name)
		s.hub.publish(Event{Time: time.Now(), Kind: kind, Master: e})
		clear(s.retryAt)
		s.kick()
	}
	return s.masterEntryLocked(name), nil
}

// knownMasterLocked reports whether a master of that name is connected,
// recently disconnected, holds an instance, or is draining.
func (s *Server) knownMasterLocked(name string) bool {
	if _, ok := s.drained[name]; ok {
		return true
	}
	for _, m := range s.masters {
		if m.info.Name == name {
			return true
		}
	}
	for _, g := range s.gone {
		if g.name == name {
			return true
		}
	}
	for _, in := range s.insts {
		if in.State.Placed() && in.Master == name || in.Handoff != nil && in.Handoff.Master == name {
			return true
		}
	}
	return false
}

func (s *Server) isDrainingLocked(name string) bool {
	_, ok := s.drained[name]
	return ok
}

// undrainLocked cancels the replacements of a master's instances: open
// handoff rounds are closed and granted handoffs are stopped.
func (s *Server) undrainLocked(name string) {
	now := s.now()
	for _, in := range s.insts {
		if in.Master != name || !in.State.Placed() {
			continue
		}
		if r, ok := s.rounds[in.Name]; ok && r.handoff {
			delete(s.rounds, in.Name)
		}
		delete(s.retryAt, in.Name)
		if in.Handoff != nil {
			s.dropHandoffLocked(in, "", now)
		} else if in.State == needs.Running && in.Reason != "" {
			in.Reason = ""
			s.saveLocked(in)
		}
	}
}

// wantsHandoffLocked reports whether in should get a replacement on another
// master: it runs on a draining master, or is to move for a rebalance
// (lan/rebalance.go), and has none yet.
func (s *Server) wantsHandoffLocked(in *needs.Instance) bool {
	return in.State == needs.Running && !in.Removing && in.Handoff == nil && (s.isDrainingLocked(in.Master) || s.movingLocked(in))
}

// handoffsLocked opens a replacement round for each running instance of a
// draining master. The instance keeps running meanwhile; if no other master
// can take it, its reason says so and it is tried again later.
func (s *Server) handoffsLocked(now time.Time, due func(time.Time)) {
	var todo []*needs.Instance
	for _, in := range s.insts {
		if s.wantsHandoffLocked(in) {
			if _, open := s.rounds[in.Name]; !open {
				todo = append(todo, in)
			}
		}
	}
	slices.SortFunc(todo, func(a, b *needs.Instance) int { return strings.Compare(a.Name, b.Name) })
	for _, in := range todo {
		if t, ok := s.retryAt[in.Name]; ok && now.Before(t) {
			due(t)
			continue
		}
		n := s.needs[in.Need]
		if n == nil {
			continue
		}
		var eligible []*session
		for _, m := range s.masters {
			if m.info.ID != in.MasterID && !s.isDrainingLocked(m.info.Name) && (n.Machine == "" || m.info.Name == n.Machine) &&
				s.mayTakeLocked(in, m) {
				eligible = append(eligible, m)
			}
		}
		if len(eligible) == 0 && s.giveUpMoveLocked(in, "no master that holds two fewer of its need is connected") {
			continue
		}
		if len(eligible) == 0 {
			why := fmt.Sprintf("master %s is draining; no other master can take it: none connected that is not draining", in.Master)
			if n.Machine != "" {
				why = fmt.Sprintf("master %s is draining; it stays: the need is pinned to it", in.Master)
			}
			s.setReasonLocked(in, why)
			s.retryAt[in.Name] = now.Add(noBidRetry)
			continue
		}
		s.openRoundLocked(in, n, eligible, true, now)
	}
}

// dropHandoffLocked cancels in's handoff: its master is told to stop the
// replacement (if it is connected) and the instance stays where it runs.
// A non-empty why is recorded and the next replacement waits noBidRetry.
func (s *Server) dropHandoffLocked(in *needs.Instance, why string, now time.Time) {
	h := in.Handoff
	if h == nil {
		return
	}
	reason := "replacement cancelled"
	if why != "" {
		reason = why
	}
	s.stopHandoffLocked(h, reason)
	s.forgetHandoffLocked(in, why, now)
}

// forgetHandoffLocked is dropHandoffLocked for a replacement that is gone
// already: nothing is stopped.
func (s *Server) forgetHandoffLocked(in *needs.Instance, why string, now time.Time) {
	s.giveUpMoveLocked(in, cmp.Or(why, "replacement cancelled")) // a rebalance move, if it was one, is over
	delete(s.earlyReady, in.Handoff.Alloc)
	in.Handoff = nil
	in.Reason = why
	if why != "" {
		s.retryAt[in.Name] = now.Add(noBidRetry)
	}
	s.saveLocked(in)
	s.kick()
}

// stopHandoffLocked tells a handoff's master, if connected, to stop it.
func (s *Server) stopHandoffLocked(h *needs.Handoff, why string) {
	delete(s.earlyReady, h.Alloc)
	if m, ok := s.masters[h.MasterID]; ok {
		m.send(pipes.TypeStop, &pipes.Stop{Alloc: h.Alloc, Reason: why, GraceMS: int(s.cfg.StopGrace / time.Millisecond)})
	}
}

// handoffApprovedLocked makes an approved replacement the instance's
// placement, then tells the old master to stop the old allocation. The
// replacement is approved first: the instance never stops running.
func (s *Server) handoffApprovedLocked(in *needs.Instance) {
	oldAlloc, oldID, oldName := in.Alloc, in.MasterID, in.Master
	in.Promote(true, s.now().UTC())
	in.Reason = ""
	s.saveLocked(in)
	if m, ok := s.masters[in.MasterID]; ok {
		m.send(pipes.TypeApprove, &pipes.AllocRef{Alloc: in.Alloc})
	}
	s.retiring[oldAlloc] = retiring{masterID: oldID, instance: in.Name}
	if m, ok := s.masters[oldID]; ok {
		m.send(pipes.TypeStop, &pipes.Stop{Alloc: oldAlloc, GraceMS: int(s.cfg.StopGrace / time.Millisecond),
			Reason: s.retireReasonLocked(oldName, in)})
	}
	s.log.Info("instance handed off", "instance", in.Name, "from", oldName, "to", in.Master, "alloc", in.Alloc)
	s.moveDoneLocked(in, oldID, oldName)
	s.kick()
}
