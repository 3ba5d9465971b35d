package lan

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"berth/lifecycle"
	"berth/needs"
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
	var e *needs.Master
	changed := false
	err := s.persist(func(now time.Time) (*Change, error) {
		if !s.knownMasterLocked(name) {
			return nil, fmt.Errorf("master %q: %w (never seen: not connected and holding no instance)", name, needs.ErrNotFound)
		}
		ch := &Change{}
		if s.core.Draining(name) == on {
			return ch, nil
		}
		changed = true
		if on {
			ch.PutDrained = map[string]time.Time{name: now.UTC()}
		} else {
			ch.DeleteDrained = []string{name}
		}
		return ch, nil
	}, func() {
		if changed {
			s.stepLocked(lifecycle.Drained{Name: name, On: on})
			kind := EventMasterUndrain
			if on {
				kind = EventMasterDrain
				s.log.Info("master draining", "master", name)
			} else {
				s.log.Info("master undrained", "master", name)
				for inst, r := range s.rounds {
					if in := s.core.Insts[inst]; r.handoff && (in == nil || in.Master == name) {
						delete(s.rounds, inst)
					}
				}
			}
			s.publishLocked(Event{Time: time.Now(), Kind: kind, Master: s.masterEntryLocked(name)})
		}
		e = s.masterEntryLocked(name)
	})
	if err != nil {
		if errors.Is(err, needs.ErrNotFound) || errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("persist drain of master %q: %w", name, err)
	}
	return e, nil
}

// knownMasterLocked reports whether a master of that name is connected,
// recently disconnected, holds an instance, or is draining.
func (s *Server) knownMasterLocked(name string) bool {
	if s.core.Draining(name) {
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
	for _, in := range s.core.Insts {
		if in.State.Placed() && in.Master == name || in.Handoff != nil && in.Handoff.Master == name {
			return true
		}
	}
	return false
}

// handoffsLocked opens a replacement round for each running instance of a
// draining master. The instance keeps running meanwhile; if no other master
// can take it, its reason says so and it is tried again later.
func (s *Server) handoffsLocked(now time.Time, due func(time.Time)) {
	if len(s.core.Drained) == 0 && len(s.core.Moving) == 0 {
		return
	}
	var todo []*needs.Instance
	for _, in := range s.core.Insts {
		if s.core.WantsHandoff(in) {
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
		n := s.core.Needs[in.Need]
		if n == nil {
			continue
		}
		var eligible []*session
		for _, m := range s.masters {
			if m.info.ID != in.MasterID && !s.core.Draining(m.info.Name) && (n.Machine == "" || m.info.Name == n.Machine) &&
				s.mayTakeLocked(in, m) {
				eligible = append(eligible, m)
			}
		}
		if len(eligible) == 0 && s.giveUpMoveLocked(in.Name, "no master that holds two fewer of its need is connected") {
			continue
		}
		if len(eligible) == 0 {
			why := fmt.Sprintf("master %s is draining; no other master can take it: none connected that is not draining", in.Master)
			if n.Machine != "" {
				why = fmt.Sprintf("master %s is draining; it stays: the need is pinned to it", in.Master)
			}
			s.stepLocked(lifecycle.Unplaced{Instance: in.Name, Why: why})
			continue
		}
		s.openRoundLocked(in, n, eligible, true, now)
	}
}
