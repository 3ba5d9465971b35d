package lan

import (
	"maps"
	"slices"
	"sync"
	"time"

	"berth/needs"
	"berth/pipes"
)

// The running set reaches the masters that asked for it (pipes.Hello.Services)
// from one goroutine, the services pusher. The committer and the API's
// writes only mark the needs a write touched (servicesPush.touch: a short
// lock, a non-blocking wake); the pusher, at most once per servicesEvery,
// reads those needs' running instances from the view (so a master never
// learns of a running instance the disk does not hold), compares them with
// what it last pushed and, if any changed, encodes one diff of the
// instances that started, changed or stopped (pipes.Prepare)
// that every synced session queues as it is. A session that joined since
// gets a full set of the same revision, encoded once for all who joined in
// that round, and then the diffs. Neither Server.mu nor the committer waits
// for any of it.

// servicesEvery is the shortest time between two pushes.
const servicesEvery = 100 * time.Millisecond

// servicesPerPart bounds the instances of one services frame, so that a
// frame stays under pipes.MaxFrame (about 200 bytes each, 700 at most).
const servicesPerPart = 1000

type servicesPush struct {
	wake chan struct{}

	mu    sync.Mutex      // Protects following.
	dirty map[string]bool // needs touched by writes since the last push
	all   bool            // every need: the first push
	joins []*session      // sessions waiting for their full set

	// Owned by the pusher goroutine.
	rev     uint64
	sets    map[string][]pipes.Service // as last pushed, by need, sorted by instance
	members map[*session]bool          // sessions that had their full set
}

func newServicesPush() *servicesPush {
	return &servicesPush{wake: make(chan struct{}, 1), dirty: map[string]bool{}, all: true,
		rev: uint64(time.Now().UnixNano()), sets: map[string][]pipes.Service{}, members: map[*session]bool{}}
}

func (p *servicesPush) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// touch marks the needs of the named instances as changed.
func (p *servicesPush) touch(instances []string, needNames []string) {
	if len(instances) == 0 && len(needNames) == 0 {
		return
	}
	p.mu.Lock()
	for _, name := range instances {
		if need, _, err := needs.ParseInstanceName(name); err == nil {
			p.dirty[need] = true
		}
	}
	for _, n := range needNames {
		p.dirty[n] = true
	}
	p.mu.Unlock()
	p.kick()
}

// join queues a session for its full set.
func (p *servicesPush) join(m *session) {
	p.mu.Lock()
	p.joins = append(p.joins, m)
	p.mu.Unlock()
	p.kick()
}

func (p *servicesPush) take() (dirty map[string]bool, all bool, joins []*session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dirty, all, joins = p.dirty, p.all, p.joins
	p.dirty, p.all, p.joins = map[string]bool{}, false, nil
	return dirty, all, joins
}

// pushServices is the services pusher; it runs until the server closes.
func (s *Server) pushServices() {
	p := s.svc
	var last time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-p.wake:
		}
		if wait := servicesEvery - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		s.pushOnce()
	}
}

// pushOnce sends what changed to the synced sessions and a full set to
// those that joined.
func (s *Server) pushOnce() {
	p := s.svc
	dirty, all, joins := p.take()
	for m := range p.members {
		if m.gone() {
			delete(p.members, m)
		}
	}
	if len(p.members) == 0 && len(joins) == 0 {
		// Nobody to tell: read nothing now, and everything when someone joins.
		p.mu.Lock()
		p.all = true
		p.mu.Unlock()
		return
	}
	base := p.rev
	changed := p.update(s.view.running(dirty, all), all)
	if len(changed) > 0 {
		p.rev++
		diff := s.prepare(p.diff(base, changed))
		for m := range p.members {
			m.sendPrepared(diff)
		}
	}
	if len(joins) == 0 {
		return
	}
	full := s.prepare(p.full())
	for _, m := range joins {
		if !m.gone() {
			m.sendPrepared(full)
			p.members[m] = true
		}
	}
}

// update records the running sets read for the dirty needs (every need if
// all) and returns the needs that changed, with their sets as they were.
func (p *servicesPush) update(sets map[string][]pipes.Service, all bool) map[string][]pipes.Service {
	changed := map[string][]pipes.Service{}
	if all {
		for need := range p.sets {
			if _, ok := sets[need]; !ok {
				sets[need] = nil
			}
		}
	}
	for need, set := range sets {
		if slices.EqualFunc(p.sets[need], set, sameService) {
			continue
		}
		changed[need] = p.sets[need]
		if len(set) == 0 {
			delete(p.sets, need)
		} else {
			p.sets[need] = set
		}
	}
	return changed
}

func sameService(a, b pipes.Service) bool {
	return a.Instance == b.Instance && a.Alloc == b.Alloc && a.Master == b.Master && a.Address == b.Address &&
		maps.Equal(a.Ports, b.Ports)
}

// diff is revision p.rev as a diff against base: the instances of the
// changed needs that started or changed, and those that stopped.
func (p *servicesPush) diff(base uint64, changed map[string][]pipes.Service) []pipes.Services {
	var parts []pipes.Services
	cur := pipes.Services{Rev: p.rev, Base: base}
	room := func() {
		if len(cur.Instances)+len(cur.Removed) == servicesPerPart {
			parts = append(parts, cur)
			cur = pipes.Services{Rev: p.rev, Base: base}
		}
	}
	for _, need := range slices.Sorted(maps.Keys(changed)) {
		old, now := changed[need], p.sets[need]
		was := make(map[string]pipes.Service, len(old))
		for _, sv := range old {
			was[sv.Instance] = sv
		}
		for _, sv := range now {
			if o, ok := was[sv.Instance]; !ok || !sameService(o, sv) {
				room()
				cur.Instances = append(cur.Instances, sv)
			}
			delete(was, sv.Instance)
		}
		for _, sv := range old {
			if _, gone := was[sv.Instance]; gone {
				room()
				cur.Removed = append(cur.Removed, sv.Instance)
			}
		}
	}
	return numbered(append(parts, cur))
}

// full is revision p.rev whole.
func (p *servicesPush) full() []pipes.Services {
	var parts []pipes.Services
	cur := pipes.Services{Rev: p.rev, Full: true}
	for _, need := range slices.Sorted(maps.Keys(p.sets)) {
		for _, sv := range p.sets[need] {
			if len(cur.Instances) == servicesPerPart {
				parts = append(parts, cur)
				cur = pipes.Services{Rev: p.rev, Full: true}
			}
			cur.Instances = append(cur.Instances, sv)
		}
	}
	return numbered(append(parts, cur))
}

func numbered(parts []pipes.Services) []pipes.Services {
	for i := range parts {
		parts[i].Part, parts[i].Parts = i, len(parts)
	}
	return parts
}

// prepare encodes the parts of a revision once, for every session.
func (s *Server) prepare(parts []pipes.Services) []*pipes.Prepared {
	out := make([]*pipes.Prepared, 0, len(parts))
	for i := range parts {
		msg, err := pipes.New(pipes.TypeServices, &parts[i])
		if err == nil {
			var p *pipes.Prepared
			if p, err = pipes.Prepare(msg); err == nil {
				out = append(out, p)
				continue
			}
		}
		// Cannot happen with valid records; the masters resync on the next link.
		s.log.Error("encode services", "rev", parts[i].Rev, "part", i, "err", err)
		return nil
	}
	return out
}

// running returns the running set of each need in names (of every need if
// all), sorted by instance index; a need with none maps to nil.
func (v *view) running(names map[string]bool, all bool) map[string][]pipes.Service {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string][]pipes.Service, len(names))
	targets := map[string]bool{} // needs some need has an upstream to
	for _, n := range v.needs {
		for _, u := range n.Upstreams {
			targets[u.Need] = true
		}
	}
	add := func(need string) {
		// Only the mesh's needs go to the masters: those with ingress or
		// peers, and those some need has an upstream to.
		if n := v.needs[need]; n == nil || !(n.Meshed() || n.Peers || targets[need]) {
			out[need] = nil
			return
		}
		var set []*needs.Instance
		for _, in := range v.byNeed[need] {
			if in.State == needs.Running && !in.Removing {
				set = append(set, in)
			}
		}
		slices.SortFunc(set, func(a, b *needs.Instance) int { return a.Index - b.Index })
		svcs := make([]pipes.Service, 0, len(set))
		for _, in := range set {
			svcs = append(svcs, pipes.Service{Need: in.Need, Instance: in.Name, Alloc: in.Alloc, Master: in.Master,
				Address: in.Address, Ports: in.Ports})
		}
		out[need] = svcs
	}
	if all {
		for need := range v.byNeed {
			add(need)
		}
	}
	for need := range names {
		add(need)
	}
	return out
}
