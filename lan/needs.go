package lan

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"berth/needs"
)

// AddNeed declares a new need and creates its pending instances.
func (s *Server) AddNeed(n *needs.Need) (*needs.NeedStatus, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	n = n.Clone()
	n.Created = time.Now().UTC()
	var st *needs.NeedStatus
	err := s.persist(func(now time.Time) (*Change, error) {
		if err := s.ingressConflictLocked(n); err != nil {
			return nil, err
		}
		return s.core.PlanAdd(n, now)
	}, func() {
		s.publishLocked(Event{Time: time.Now(), Kind: EventNeedAdded, Need: n.Name})
		st = s.statusLocked(n, true)
	})
	if err != nil {
		return nil, persistError("need "+strconv.Quote(n.Name), err)
	}
	return st, nil
}

// persistError wraps a failed write; validation errors and ErrClosed pass
// as they are.
func persistError(what string, err error) error {
	if errors.Is(err, needs.ErrInvalid) || errors.Is(err, needs.ErrExists) || errors.Is(err, needs.ErrNotFound) || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("persist %s: %w", what, err)
}

// ScaleNeed changes the desired instance count of a need.
func (s *Server) ScaleNeed(name string, count int) (*needs.NeedStatus, error) {
	if err := needs.ValidateInstances(count); err != nil {
		return nil, err
	}
	var st *needs.NeedStatus
	err := s.persist(func(now time.Time) (*Change, error) {
		return s.core.PlanScale(name, count, now)
	}, func() {
		s.publishLocked(Event{Time: time.Now(), Kind: EventNeedScaled, Need: name, Message: fmt.Sprintf("%d instances", count)})
		st = s.statusLocked(s.core.Needs[name], true)
	})
	if err != nil {
		return nil, persistError("need "+strconv.Quote(name), err)
	}
	return st, nil
}

// RemoveNeed deletes a need and stops all its instances.
func (s *Server) RemoveNeed(name string) (*needs.NeedStatus, error) {
	var st *needs.NeedStatus
	err := s.persist(func(now time.Time) (*Change, error) {
		ch, err := s.core.PlanRemove(name, now)
		if err == nil {
			st = s.statusLocked(s.core.Needs[name], true) // as it was
		}
		return ch, err
	}, func() {
		s.publishLocked(Event{Time: time.Now(), Kind: EventNeedRemoved, Need: name})
	})
	if err != nil {
		return nil, persistError("removal of need "+strconv.Quote(name), err)
	}
	return st, nil
}

func (s *Server) needInstancesLocked(name string) []*needs.Instance {
	return s.core.NeedInstances(name)
}

func (s *Server) statusLocked(n *needs.Need, withInstances bool) *needs.NeedStatus {
	st := &needs.NeedStatus{Need: *n.Clone()}
	st.Count(s.needInstancesLocked(n.Name), withInstances)
	return st
}

// Needs lists every need with its live counts.
func (s *Server) Needs() []*needs.NeedStatus { return s.view.list() }

// Need returns one need with its instances.
func (s *Server) Need(name string) (*needs.NeedStatus, error) { return s.view.need(name) }

// Services lists every placed instance: what runs, where, on which ports.
func (s *Server) Services() []*needs.Instance { return s.view.services() }

// RestartNeed retries the need's backed-off instances now: they become
// pending with their failure count reset (their restart count is kept).
func (s *Server) RestartNeed(name string) (*needs.NeedStatus, error) {
	var st *needs.NeedStatus
	var retried []*needs.Instance
	err := s.persist(func(now time.Time) (*Change, error) {
		ch, err := s.core.PlanRestart(name, now)
		if err == nil {
			retried = ch.PutInstances
		}
		return ch, err
	}, func() {
		for _, in := range retried {
			delete(s.retryAt, in.Name)
		}
		n := len(retried)
		s.publishLocked(Event{Time: time.Now(), Kind: EventNeedRestarted, Need: name,
			Message: fmt.Sprintf("%d backed-off instance(s) retried", n)})
		st = s.statusLocked(s.core.Needs[name], true)
	})
	if err != nil {
		return nil, persistError("restart of need "+strconv.Quote(name), err)
	}
	return st, nil
}

// Masters lists connected masters, those disconnected but not yet lost,
// and draining ones. Instances counts what a master holds: placements,
// replacements started on it, and allocations it was told to stop after a
// handoff and has not confirmed.
func (s *Server) Masters() []*needs.Master {
	s.mu.Lock()
	defer s.mu.Unlock()
	count, used := s.holdingsLocked()
	var out []*needs.Master
	names := map[string]bool{}
	for _, m := range s.masters {
		mm := s.connectedEntryLocked(m, count, used)
		out = append(out, mm)
		names[mm.Name] = true
	}
	for id, g := range s.gone {
		mm := &needs.Master{ID: id, Name: g.name, Since: g.since.UTC(), Instances: count[id], Draining: s.core.Draining(g.name)}
		if g.heard {
			mm.LastSeen = g.since.UTC()
		}
		out = append(out, mm)
		names[g.name] = true
	}
	for name, since := range s.core.Drained {
		if !names[name] {
			out = append(out, &needs.Master{Name: name, Draining: true, Since: since})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// holdingsLocked counts, per master id, the allocations it holds and the
// ports they use.
func (s *Server) holdingsLocked() (count map[string]int, used map[string]map[needs.Protocol]int) {
	count, used = map[string]int{}, map[string]map[needs.Protocol]int{}
	add := func(id string, ports map[needs.Protocol]int) {
		count[id]++
		if used[id] == nil {
			used[id] = map[needs.Protocol]int{}
		}
		for p := range ports {
			used[id][p]++
		}
	}
	for _, in := range s.core.Insts {
		if in.State.Placed() {
			add(in.MasterID, in.Ports)
		}
		if h := in.Handoff; h != nil {
			add(h.MasterID, h.Ports)
		}
	}
	for _, r := range s.core.Retiring {
		add(r.MasterID, nil)
	}
	return count, used
}

// connectedEntryLocked is the Masters entry of a connected master, with
// Free as the lanmanager sees it: range size less placed ports.
func (s *Server) connectedEntryLocked(m *session, count map[string]int, used map[string]map[needs.Protocol]int) *needs.Master {
	mm := m.info
	mm.Instances = count[m.info.ID]
	mm.Connected = true
	mm.Draining = s.core.Draining(mm.Name)
	mm.LastSeen = m.seen().UTC()
	mm.Ingress = slices.Clone(m.ingress)
	mm.Free = map[needs.Protocol]int{}
	for p, r := range mm.Ranges {
		mm.Free[p] = max(0, r[1]-r[0]+1-used[m.info.ID][p])
	}
	return &mm
}

// masterEntryLocked is the Masters entry of the master of that name; a
// master known only by a drain, or only from instance records, gets a
// disconnected entry.
func (s *Server) masterEntryLocked(name string) *needs.Master {
	for _, m := range s.masters {
		if m.info.Name == name {
			count, used := s.holdingsLocked()
			return s.connectedEntryLocked(m, count, used)
		}
	}
	count, _ := s.holdingsLocked()
	e := &needs.Master{Name: name, Draining: s.core.Draining(name)}
	for id, g := range s.gone {
		if g.name == name {
			e.ID, e.Instances = id, count[id]
			if g.heard {
				e.LastSeen = g.since.UTC()
			}
			return e
		}
	}
	for _, in := range s.core.Insts {
		if in.State.Placed() && in.Master == name {
			e.ID = in.MasterID
			break
		}
	}
	if e.ID != "" {
		e.Instances = count[e.ID]
	}
	return e
}
