package lan

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"berth/needs"
)

// view is what the read API (need ls, need show, service ls) answers
// from: the needs and instances as last written to lan.db. The committer
// and the API's writes keep it up to date after each write, before the
// frames and events that depend on it go out, so a client that saw an
// event, or a master that got a frame, reads a state at least that new.
// Reads take only the view's lock, never Server.mu: a list or a show
// never waits for the placer, the links or a write.
type view struct {
	mu     sync.RWMutex // Protects following.
	needs  map[string]*needs.Need
	byNeed map[string]map[string]*needs.Instance // need → instance → record, never changed once here
	counts map[string]*needCounts                // need → what list shows of its instances, kept as they change
}

// needCounts is what a need's instances add up to in a list: kept as
// records come and go, so that a list costs the needs, not the 50,000
// instances they may hold (it took 6.5 ms at p50 under the simulator's
// full size, with the view's lock held against the committer).
type needCounts struct {
	running, pending int
	reasons          map[string]string // instance → reason, for those needs.NeedStatus.Count lists
}

// add counts in (sign 1) or takes it out (sign -1), as Count would.
func (c *needCounts) add(in *needs.Instance, sign int) {
	switch in.State {
	case needs.Running:
		c.running += sign
	case needs.Pending, needs.Backoff, needs.Starting:
		if !in.Removing {
			c.pending += sign
		}
	}
	if in.Reason != "" && !in.Removing {
		if sign > 0 {
			c.reasons[in.Name] = in.Reason
		} else {
			delete(c.reasons, in.Name)
		}
	}
}

func newView(ns map[string]*needs.Need, is map[string]*needs.Instance) *view {
	v := &view{needs: map[string]*needs.Need{}, byNeed: map[string]map[string]*needs.Instance{}, counts: map[string]*needCounts{}}
	for name, n := range ns {
		v.needs[name] = n.Clone()
	}
	for _, in := range is {
		v.put(in.Clone())
	}
	return v
}

func (v *view) put(in *needs.Instance) {
	m := v.byNeed[in.Need]
	c := v.counts[in.Need]
	if m == nil {
		m = map[string]*needs.Instance{}
		v.byNeed[in.Need] = m
		c = &needCounts{reasons: map[string]string{}}
		v.counts[in.Need] = c
	}
	if old := m[in.Name]; old != nil {
		c.add(old, -1)
	}
	m[in.Name] = in
	c.add(in, 1)
}

func (v *view) drop(name string) {
	need, _, err := needs.ParseInstanceName(name)
	if err != nil {
		return
	}
	if m := v.byNeed[need]; m != nil {
		if old := m[name]; old != nil {
			v.counts[need].add(old, -1)
		}
		delete(m, name)
		if len(m) == 0 {
			delete(v.byNeed, need)
			delete(v.counts, need)
		}
	}
}

// written applies a written batch's records (nil: deleted). The records
// are the batch's own copies, never changed after.
func (v *view) written(records map[string]*needs.Instance) {
	if len(records) == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for name, in := range records {
		if in == nil {
			v.drop(name)
		} else {
			v.put(in)
		}
	}
}

// changed applies a written API change. Its instances go on into the core
// and change there: the view keeps copies.
func (v *view) changed(ch *Change) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, name := range ch.DeleteNeeds {
		delete(v.needs, name)
	}
	for _, n := range ch.PutNeeds {
		v.needs[n.Name] = n
	}
	for _, name := range ch.DeleteInstances {
		v.drop(name)
	}
	for _, in := range ch.PutInstances {
		v.put(in.Clone())
	}
}

// status is one need with its counts (and instances, if asked); v.mu held.
func (v *view) status(n *needs.Need, withInstances bool) *needs.NeedStatus {
	st := &needs.NeedStatus{Need: *n.Clone()}
	ins := make([]*needs.Instance, 0, len(v.byNeed[n.Name]))
	for _, in := range v.byNeed[n.Name] {
		ins = append(ins, in)
	}
	if withInstances {
		sort.Slice(ins, func(i, j int) bool { return ins[i].Index < ins[j].Index })
	}
	st.Count(ins, withInstances) // counts and sorted reasons need no order
	return st
}

func (v *view) list() []*needs.NeedStatus {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*needs.NeedStatus, 0, len(v.needs))
	for _, n := range v.needs {
		st := &needs.NeedStatus{Need: *n.Clone()}
		if c := v.counts[n.Name]; c != nil {
			st.Running, st.Pending = c.running, c.pending
			for name, r := range c.reasons {
				st.Reasons = append(st.Reasons, name+": "+r)
			}
			slices.Sort(st.Reasons)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (v *view) need(name string) (*needs.NeedStatus, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n, ok := v.needs[name]
	if !ok {
		return nil, fmt.Errorf("need %q: %w", name, needs.ErrNotFound)
	}
	return v.status(n, true), nil
}

func (v *view) services() []*needs.Instance {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []*needs.Instance
	for _, m := range v.byNeed {
		for _, in := range m {
			if in.State.Placed() {
				out = append(out, in.Clone())
			}
		}
	}
	slices.SortFunc(out, func(a, b *needs.Instance) int {
		if a.Need != b.Need {
			if a.Need < b.Need {
				return -1
			}
			return 1
		}
		return a.Index - b.Index
	})
	return out
}
