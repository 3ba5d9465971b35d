package lifecycle

import (
	"fmt"
	"sort"
	"time"

	"berth/needs"
)

// Change is a set of writes applied in one transaction.
type Change struct {
	PutNeeds        []*needs.Need
	DeleteNeeds     []string
	PutInstances    []*needs.Instance
	DeleteInstances []string
	// PutDrained marks masters (by name) as draining since the given time;
	// DeleteDrained ends their drain.
	PutDrained    map[string]time.Time
	DeleteDrained []string
}

// Empty reports whether c writes nothing.
func (c *Change) Empty() bool {
	return len(c.PutNeeds)+len(c.DeleteNeeds)+len(c.PutInstances)+len(c.DeleteInstances)+
		len(c.PutDrained)+len(c.DeleteDrained) == 0
}

// The Plan functions compute the change an API call makes, without
// changing the state: the owner persists it, then applies it with a
// Committed event. A failed write therefore changes nothing.

// PlanAdd declares a new need (validated by the caller) with its pending
// instances.
func (st *State) PlanAdd(n *needs.Need, now time.Time) (*Change, error) {
	if _, ok := st.Needs[n.Name]; ok {
		return nil, fmt.Errorf("need %q: %w", n.Name, needs.ErrExists)
	}
	ch := &Change{PutNeeds: []*needs.Need{n}}
	st.grow(n, ch, now)
	return ch, nil
}

// PlanScale changes the desired instance count of a need: missing
// instances are added, those at or above count stop for good.
func (st *State) PlanScale(name string, count int, now time.Time) (*Change, error) {
	n, ok := st.Needs[name]
	if !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	next := n.Clone()
	next.Instances = count
	ch := &Change{PutNeeds: []*needs.Need{next}}
	st.grow(next, ch, now)
	for _, in := range st.NeedInstances(name) {
		if in.Index >= count && !in.Removing {
			st.retire(in, "scaled down", ch, now)
		}
	}
	return ch, nil
}

// PlanRemove deletes a need and stops all its instances.
func (st *State) PlanRemove(name string, now time.Time) (*Change, error) {
	if _, ok := st.Needs[name]; !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	ch := &Change{DeleteNeeds: []string{name}}
	for _, in := range st.NeedInstances(name) {
		st.retire(in, "need removed", ch, now)
	}
	return ch, nil
}

// PlanRestart makes the need's backed-off instances pending now, their
// failure count reset (their restart count is kept).
func (st *State) PlanRestart(name string, now time.Time) (*Change, error) {
	if _, ok := st.Needs[name]; !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	ch := &Change{}
	for _, in := range st.NeedInstances(name) {
		if in.State != needs.Backoff || in.Removing {
			continue
		}
		c := in.Clone()
		c.State, c.Since, c.Reason = needs.Pending, now.UTC(), "restarted by hand"
		c.Failures, c.NextAttempt, c.FailedOn = 0, time.Time{}, ""
		ch.PutInstances = append(ch.PutInstances, c)
	}
	return ch, nil
}

// grow adds to ch the instances n needs that are missing, and revives
// those below n.Instances that are stopping for good.
func (st *State) grow(n *needs.Need, ch *Change, now time.Time) {
	for i := 0; i < n.Instances; i++ {
		name := needs.InstanceName(n.Name, i)
		if in, ok := st.Insts[name]; ok {
			// Still stopping from an earlier scale-down or removal: keep it,
			// and place it again once its master confirms the stop.
			if in.Removing {
				c := in.Clone()
				c.Removing = false
				ch.PutInstances = append(ch.PutInstances, c)
			}
			continue
		}
		ch.PutInstances = append(ch.PutInstances, &needs.Instance{Need: n.Name, Index: i, Name: name, State: needs.Pending, Since: now.UTC()})
	}
}

// retire adds to ch the removal of an instance: a placed one is marked
// stopping for good (and stopped once committed), an unplaced one is
// deleted.
func (st *State) retire(in *needs.Instance, why string, ch *Change, now time.Time) {
	if !in.State.Placed() {
		ch.DeleteInstances = append(ch.DeleteInstances, in.Name)
		return
	}
	c := in.Clone()
	c.Removing = true
	c.Handoff = nil // stopped once committed
	c.State, c.Since, c.Reason = needs.Stopping, now.UTC(), why
	ch.PutInstances = append(ch.PutInstances, c)
}

// NeedInstances returns the instances of a need by index.
func (st *State) NeedInstances(name string) []*needs.Instance {
	out := make([]*needs.Instance, 0, len(st.byNeed[name]))
	for _, in := range st.byNeed[name] {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}
