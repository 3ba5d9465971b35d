package lan

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"berth/needs"
	"berth/pipes"
)

// AddNeed declares a new need and creates its pending instances.
func (s *Server) AddNeed(n *needs.Need) (*needs.NeedStatus, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	n = n.Clone()
	n.Created = time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if _, ok := s.needs[n.Name]; ok {
		return nil, fmt.Errorf("need %q: %w", n.Name, needs.ErrExists)
	}
	ch := &Change{PutNeeds: []*needs.Need{n}}
	s.growLocked(n, ch)
	if err := s.store.Apply(ch); err != nil {
		return nil, fmt.Errorf("persist need %q: %w", n.Name, err)
	}
	s.needs[n.Name] = n
	s.hub.publish(Event{Time: time.Now(), Kind: EventNeedAdded, Need: n.Name})
	s.commitLocked(ch)
	return s.statusLocked(n, true), nil
}

// growLocked adds to ch the instances n needs that are missing, and revives
// those below n.Instances that are stopping for good. It changes nothing in
// memory: commitLocked applies ch once it is persisted.
func (s *Server) growLocked(n *needs.Need, ch *Change) {
	now := time.Now().UTC()
	for i := 0; i < n.Instances; i++ {
		name := needs.InstanceName(n.Name, i)
		if in, ok := s.insts[name]; ok {
			// Still stopping from an earlier scale-down or removal: keep it,
			// and place it again once its master confirms the stop.
			if in.Removing {
				c := in.Clone()
				c.Removing = false
				ch.PutInstances = append(ch.PutInstances, c)
			}
			continue
		}
		ch.PutInstances = append(ch.PutInstances, &needs.Instance{Need: n.Name, Index: i, Name: name, State: needs.Pending, Since: now})
	}
}

// ScaleNeed changes the desired instance count of a need.
func (s *Server) ScaleNeed(name string, count int) (*needs.NeedStatus, error) {
	if err := needs.ValidateInstances(count); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.needs[name]
	if !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	next := n.Clone()
	next.Instances = count
	ch := &Change{PutNeeds: []*needs.Need{next}}
	s.growLocked(next, ch)
	for _, in := range s.needInstancesLocked(name) {
		if in.Index >= count && !in.Removing {
			s.retireLocked(in, "scaled down", ch)
		}
	}
	if err := s.store.Apply(ch); err != nil {
		return nil, fmt.Errorf("persist need %q: %w", name, err)
	}
	s.needs[name] = next
	s.hub.publish(Event{Time: time.Now(), Kind: EventNeedScaled, Need: name, Message: fmt.Sprintf("%d instances", count)})
	s.commitLocked(ch)
	return s.statusLocked(next, true), nil
}

// RemoveNeed deletes a need and stops all its instances.
func (s *Server) RemoveNeed(name string) (*needs.NeedStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.needs[name]
	if !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	ch := &Change{DeleteNeeds: []string{name}}
	for _, in := range s.needInstancesLocked(name) {
		s.retireLocked(in, "need removed", ch)
	}
	if err := s.store.Apply(ch); err != nil {
		return nil, fmt.Errorf("persist removal of need %q: %w", name, err)
	}
	delete(s.needs, name)
	st := s.statusLocked(n, true)
	s.hub.publish(Event{Time: time.Now(), Kind: EventNeedRemoved, Need: name})
	s.commitLocked(ch)
	return st, nil
}

// retireLocked adds to ch the removal of an instance: a placed one is
// marked stopping for good (and stopped by commitLocked), an unplaced one is
// deleted.
func (s *Server) retireLocked(in *needs.Instance, why string, ch *Change) {
	if !in.State.Placed() {
		ch.DeleteInstances = append(ch.DeleteInstances, in.Name)
		return
	}
	c := in.Clone()
	c.Removing = true
	c.Handoff = nil // stopped by commitLocked
	c.State, c.Since, c.Reason = needs.Stopping, s.now().UTC(), why
	ch.PutInstances = append(ch.PutInstances, c)
}

// commitLocked applies a persisted change to memory, publishes it and
// sends the stops it implies.
func (s *Server) commitLocked(ch *Change) {
	for _, name := range ch.DeleteInstances {
		if in, ok := s.insts[name]; ok {
			delete(s.insts, name)
			delete(s.retryAt, name)
			delete(s.rounds, name)
			s.hub.publish(Event{Time: time.Now(), Kind: EventInstanceRemoved, Need: in.Need, Instance: in.Clone()})
		}
	}
	for _, in := range ch.PutInstances {
		if old := s.insts[in.Name]; old != nil && old.Handoff != nil && (in.Handoff == nil || in.Handoff.Alloc != old.Handoff.Alloc) {
			s.stopHandoffLocked(old.Handoff, in.Reason) // the record in ch has none
		}
		if r, ok := s.rounds[in.Name]; ok && r.handoff && in.State != needs.Running {
			delete(s.rounds, in.Name)
		}
		s.insts[in.Name] = in
		s.emitInstanceLocked(in)
		if in.State == needs.Stopping {
			s.sendStopLocked(in, in.Reason)
		}
	}
	s.kick()
}

// sendStopLocked asks the instance's master to stop its allocation.
func (s *Server) sendStopLocked(in *needs.Instance, why string) {
	if m, ok := s.masters[in.MasterID]; ok && in.Alloc != "" {
		m.send(pipes.TypeStop, &pipes.Stop{Alloc: in.Alloc, Reason: why, GraceMS: int(s.cfg.StopGrace / time.Millisecond)})
	}
}

func (s *Server) needInstancesLocked(name string) []*needs.Instance {
	var out []*needs.Instance
	for _, in := range s.insts {
		if in.Need == name {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func (s *Server) statusLocked(n *needs.Need, withInstances bool) *needs.NeedStatus {
	st := &needs.NeedStatus{Need: *n.Clone()}
	reasons := map[string]bool{}
	for _, in := range s.needInstancesLocked(n.Name) {
		switch in.State {
		case needs.Running:
			st.Running++
		case needs.Pending, needs.Backoff, needs.Starting:
			if !in.Removing {
				st.Pending++
			}
		}
		if in.Reason != "" && !in.Removing { // a running instance has one while its master drains
			reasons[in.Name+": "+in.Reason] = true
		}
		if withInstances {
			st.InstanceList = append(st.InstanceList, in.Clone())
		}
	}
	for r := range reasons {
		st.Reasons = append(st.Reasons, r)
	}
	slices.Sort(st.Reasons)
	return st
}

// Needs lists every need with its live counts.
func (s *Server) Needs() []*needs.NeedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*needs.NeedStatus, 0, len(s.needs))
	for _, n := range s.needs {
		out = append(out, s.statusLocked(n, false))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Need returns one need with its instances.
func (s *Server) Need(name string) (*needs.NeedStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.needs[name]
	if !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	return s.statusLocked(n, true), nil
}

// Services lists every placed instance: what runs, where, on which ports.
func (s *Server) Services() []*needs.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*needs.Instance
	for _, in := range s.insts {
		if in.State.Placed() {
			out = append(out, in.Clone())
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

// RestartNeed retries the need's backed-off instances now: they become
// pending with their failure count reset (their restart count is kept).
func (s *Server) RestartNeed(name string) (*needs.NeedStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	n, ok := s.needs[name]
	if !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	now := s.now().UTC()
	ch := &Change{}
	for _, in := range s.needInstancesLocked(name) {
		if in.State != needs.Backoff || in.Removing {
			continue
		}
		c := in.Clone()
		c.State, c.Since, c.Reason = needs.Pending, now, "restarted by hand"
		c.Failures, c.NextAttempt, c.FailedOn = 0, time.Time{}, ""
		ch.PutInstances = append(ch.PutInstances, c)
	}
	if err := s.store.Apply(ch); err != nil {
		return nil, fmt.Errorf("persist restart of need %q: %w", name, err)
	}
	for _, c := range ch.PutInstances {
		delete(s.retryAt, c.Name)
	}
	s.hub.publish(Event{Time: time.Now(), Kind: EventNeedRestarted, Need: name,
		Message: fmt.Sprintf("%d backed-off instance(s) retried", len(ch.PutInstances))})
	s.commitLocked(ch)
	return s.statusLocked(n, true), nil
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
		mm := &needs.Master{ID: id, Name: g.name, Since: g.since.UTC(), Instances: count[id], Draining: s.isDrainingLocked(g.name)}
		if g.heard {
			mm.LastSeen = g.since.UTC()
		}
		out = append(out, mm)
		names[g.name] = true
	}
	for name, since := range s.drained {
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
	for _, in := range s.insts {
		if in.State.Placed() {
			add(in.MasterID, in.Ports)
		}
		if h := in.Handoff; h != nil {
			add(h.MasterID, h.Ports)
		}
	}
	for _, r := range s.retiring {
		add(r.masterID, nil)
	}
	return count, used
}

// connectedEntryLocked is the Masters entry of a connected master, with
// Free as the lanmanager sees it: range size less placed ports.
func (s *Server) connectedEntryLocked(m *session, count map[string]int, used map[string]map[needs.Protocol]int) *needs.Master {
	mm := m.info
	mm.Instances = count[m.info.ID]
	mm.Connected = true
	mm.Draining = s.isDrainingLocked(mm.Name)
	mm.LastSeen = m.seen().UTC()
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
	e := &needs.Master{Name: name, Draining: s.isDrainingLocked(name)}
	for id, g := range s.gone {
		if g.name == name {
			e.ID, e.Instances = id, count[id]
			if g.heard {
				e.LastSeen = g.since.UTC()
			}
			return e
		}
	}
	for _, in := range s.insts {
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
