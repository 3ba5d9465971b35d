package master

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"berth/mesh"
	"berth/pipes"
)

// Loads (docs/mesh.md, "Resource scores across masters"): a master sends
// the lanmanager the heartbeat figures of its children whose need is
// balanced by resource, and keeps those the lanmanager passes on from the
// other masters, so that its ingress and upstreams score every instance,
// not only its own children.

// remoteKeep is how long figures from other masters are kept once no
// newer ones come: the resource strategy holds those older than three
// heartbeats of the children (10 s by default) as unknown anyway.
const remoteKeep = time.Minute

// remoteLoads are the figures of other masters' children, by allocation.
type remoteLoads struct {
	mu sync.Mutex // Protects following.
	m  map[string]mesh.Stats
}

// take records a loads frame received at now: each entry's sampling time
// is now minus its age, on this master's clock; an entry older than the
// one kept for its allocation is ignored, and entries sampled more than
// remoteKeep before now are dropped.
func (r *remoteLoads) take(l *pipes.Loads, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]mesh.Stats{}
	}
	for alloc, st := range r.m {
		if now.Sub(st.At) > remoteKeep {
			delete(r.m, alloc)
		}
	}
	for _, e := range l.Loads {
		at := now.Add(-time.Duration(e.AgeMS) * time.Millisecond)
		if now.Sub(at) > remoteKeep {
			continue
		}
		if old, ok := r.m[e.Alloc]; ok && old.At.After(at) {
			continue // keep the newer sample
		}
		r.m[e.Alloc] = mesh.Stats{CPUPercent: e.CPUPercent, HeapUsed: e.HeapUsed, HeapTotal: e.HeapTotal, At: at}
	}
}

func (r *remoteLoads) get(alloc string) (mesh.Stats, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.m[alloc]
	return st, ok
}

// loadOf returns the latest figures of the instance running under alloc:
// its own heartbeat if it is a child of this master, else what the
// lanmanager passed on from its master.
func (a *Agent) loadOf(alloc string) (mesh.Stats, bool) {
	if st := a.childStats(alloc); st != nil {
		return mesh.Stats{CPUPercent: st.CPUPercent, HeapUsed: st.HeapUsed, HeapTotal: st.HeapTotal, At: st.SampledAt}, true
	}
	return a.remote.get(alloc)
}

// resourceNeeds returns the needs balanced by resource: those with ingress
// and those an upstream leads to.
func (a *Agent) resourceNeeds() map[string]bool {
	out := map[string]bool{}
	a.ingress.mu.Lock()
	if m := a.ingress.mesh; m != nil {
		for _, n := range m.Needs {
			if mesh.Balance(n.Balance) == mesh.Resource {
				out[n.Name] = true
			}
		}
	}
	a.ingress.mu.Unlock()
	a.mirror.mu.Lock()
	for name, t := range a.mirror.targets {
		if mesh.Balance(t.Balance) == mesh.Resource {
			out[name] = true
		}
	}
	a.mirror.mu.Unlock()
	return out
}

// shareLoads sends, every statsEvery until the link closes, the figures
// of this master's children of needs balanced by resource that are newer
// than those it sent on this link.
func (a *Agent) shareLoads(ob *outbox) {
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	sent := map[string]time.Time{} // alloc → sampling time of the figures sent
	for {
		select {
		case <-ob.conn.Done():
			return
		case <-t.C:
		}
		loads := a.newLoads(sent, time.Now())
		for chunk := range slices.Chunk(loads, pipes.MaxLoads) {
			ob.pushBody(pipes.TypeLoads, 0, &pipes.Loads{Loads: chunk}, nil)
		}
	}
}

// newLoads returns the figures to send at now and records them in sent,
// from which it drops the children that are gone.
func (a *Agent) newLoads(sent map[string]time.Time, now time.Time) []pipes.Load {
	want := a.resourceNeeds()
	if len(want) == 0 {
		clear(sent)
		return nil
	}
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		if want[c.need.Name] {
			kids = append(kids, c)
		}
	}
	a.mu.Unlock()
	var out []pipes.Load
	live := make(map[string]bool, len(kids))
	for _, c := range kids {
		live[c.alloc] = true
		c.mu.Lock()
		st := c.stats
		c.mu.Unlock()
		if st == nil || sent[c.alloc].Equal(st.SampledAt) {
			continue
		}
		sent[c.alloc] = st.SampledAt
		age := min(max(now.Sub(st.SampledAt).Milliseconds(), 0), pipes.MaxLinkMS)
		out = append(out, pipes.Load{Instance: c.instance, Alloc: c.alloc, CPUPercent: min(max(st.CPUPercent, 0), pipes.MaxLoadCPU),
			HeapUsed: st.HeapUsed, HeapTotal: st.HeapTotal, AgeMS: age})
	}
	for _, alloc := range slices.Collect(maps.Keys(sent)) {
		if !live[alloc] {
			delete(sent, alloc)
		}
	}
	slices.SortFunc(out, func(x, y pipes.Load) int { return strings.Compare(x.Alloc, y.Alloc) })
	return out
}
