package master

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"berth/needs"
	"berth/pipes"
)

// Mirror is the master's copy of the running set: every instance in state
// running, not being removed, anywhere on the LAN, as the lanmanager last
// pushed it in services frames (see pipes.Services). It is kept while the
// link is down, so that proxies go on serving the last known set, and
// replaced by the full set each new link starts with. All methods are safe
// for concurrent use.
type Mirror struct {
	mu      sync.Mutex // Protects following.
	rev     uint64
	sets    map[string][]pipes.Service  // by need; never changed once here
	targets map[string]pipes.MeshTarget // the balance of the needs upstreams lead to, from the last mesh frame
	changed chan struct{}               // closed at the next change
}

// NewMirror returns an empty mirror at revision 0.
func NewMirror() *Mirror {
	return &Mirror{sets: map[string][]pipes.Service{}, changed: make(chan struct{})}
}

// Rev is the revision of the set held; 0 until the first arrived.
func (m *Mirror) Rev() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// Snapshot returns the revision and the running set by need. The map is
// the caller's; the slices and the ports maps in them are shared and must
// not be changed.
func (m *Mirror) Snapshot() (uint64, map[string][]pipes.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev, maps.Clone(m.sets)
}

// Need returns the revision and the running instances of one need, sorted
// by instance index (shared, read-only).
func (m *Mirror) Need(name string) (uint64, []pipes.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev, m.sets[name]
}

// Changed returns a channel closed at the next change of the set. Take
// it, then read the set, then wait on it: no change is missed.
func (m *Mirror) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Target returns the balance of a need some upstream leads to, as the
// last mesh frame gave it (false if it did not list the need).
func (m *Mirror) Target(need string) (pipes.MeshTarget, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.targets[need]
	return t, ok
}

// setTargets keeps the targets of a mesh frame; a change of them is a
// change (Changed), so that the upstream listeners follow it.
func (m *Mirror) setTargets(ts []pipes.MeshTarget) {
	next := make(map[string]pipes.MeshTarget, len(ts))
	for _, t := range ts {
		next[t.Name] = t
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if maps.Equal(next, m.targets) {
		return
	}
	m.targets = next
	close(m.changed)
	m.changed = make(chan struct{})
}

// apply applies a complete revision: a full one replaces the set, a diff
// adds or replaces its instances and drops those removed. The slices of
// the needs it changes are new: snapshots taken before keep theirs.
func (m *Mirror) apply(rev uint64, full bool, instances []pipes.Service, removed []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := map[string]map[string]pipes.Service{} // need → instance → entry, for the needs changed
	touch := func(need string) map[string]pipes.Service {
		if set, ok := byName[need]; ok {
			return set
		}
		set := map[string]pipes.Service{}
		if !full {
			for _, sv := range m.sets[need] {
				set[sv.Instance] = sv
			}
		}
		byName[need] = set
		return set
	}
	for _, sv := range instances {
		touch(sv.Need)[sv.Instance] = sv
	}
	for _, name := range removed {
		if need, _, err := needs.ParseInstanceName(name); err == nil {
			delete(touch(need), name)
		}
	}
	if full {
		m.sets = map[string][]pipes.Service{}
	}
	for need, set := range byName {
		if len(set) == 0 {
			delete(m.sets, need)
			continue
		}
		list := slices.SortedFunc(maps.Values(set), func(a, b pipes.Service) int { return index(a.Instance) - index(b.Instance) })
		m.sets[need] = list
	}
	m.rev = rev
	close(m.changed)
	m.changed = make(chan struct{})
}

func index(instance string) int {
	_, i, _ := needs.ParseInstanceName(instance)
	return i
}

// errOutOfStep is a diff the mirror cannot apply on this link: the link is
// dropped so that the next one starts from a full set.
var errOutOfStep = fmt.Errorf("%w: services out of step", needs.ErrInvalid)

// gather collects the parts of one services revision on one link; only
// the link's reader uses it.
type gather struct {
	synced    bool // a full set arrived on this link
	cur       *pipes.Services
	instances []pipes.Service
	removed   []string
}

// receive handles one services frame. A bad frame changes nothing and
// drops the parts gathered so far; an error wrapping errOutOfStep means
// the link must be dropped.
func (g *gather) receive(m *Mirror, msg *pipes.Msg) error {
	var s pipes.Services
	if err := msg.Decode(&s); err != nil {
		g.cur = nil
		return err
	}
	switch {
	case g.cur == nil && s.Part != 0:
		return fmt.Errorf("%w: services rev %d part %d without part 0", errOutOfStep, s.Rev, s.Part)
	case g.cur != nil && (s.Rev != g.cur.Rev || s.Part != g.cur.Part+1 || s.Parts != g.cur.Parts || s.Full != g.cur.Full):
		want := g.cur
		g.cur = nil
		return fmt.Errorf("%w: services rev %d part %d/%d, want rev %d part %d/%d", errOutOfStep,
			s.Rev, s.Part, s.Parts, want.Rev, want.Part+1, want.Parts)
	case s.Part == 0:
		g.instances, g.removed = nil, nil
	}
	g.instances = append(g.instances, s.Instances...)
	g.removed = append(g.removed, s.Removed...)
	g.cur = &s
	if s.Part+1 < s.Parts {
		return nil
	}
	g.cur = nil
	rev := m.Rev()
	switch {
	case s.Full && g.synced && s.Rev <= rev:
		return fmt.Errorf("%w: full services rev %d is not newer than %d", errOutOfStep, s.Rev, rev)
	case !s.Full && !g.synced:
		return fmt.Errorf("%w: services diff rev %d before a full set on this link", errOutOfStep, s.Rev)
	case !s.Full && s.Base != rev:
		return fmt.Errorf("%w: services diff rev %d is against %d, the mirror is at %d", errOutOfStep, s.Rev, s.Base, rev)
	}
	m.apply(s.Rev, s.Full, g.instances, g.removed)
	g.synced = g.synced || s.Full
	g.instances, g.removed = nil, nil
	return nil
}
