package lan

import (
	"slices"
	"strings"
	"sync"
	"time"

	"berth/needs"
	"berth/pipes"
)

// Loads (docs/mesh.md, "Resource scores across masters"): each master
// sends the heartbeat figures of its children that are balanced by
// resource; the lanmanager keeps the latest of each running instance and
// passes them on to every master that asked (pipes.Hello.Loads), once per
// loadsEvery: the entries that changed, and all of them to a master that
// just linked. The figures live in memory only: they are a second old,
// and a restarted lanmanager has new ones within a heartbeat of the
// children.

// loadsEvery is how often the lanmanager passes loads on.
const loadsEvery = time.Second

// loadsKeep is how long an entry that is no longer reported is kept: the
// resource strategy holds figures older than three of the children's
// heartbeats (10 s by default) as unknown anyway.
const loadsKeep = time.Minute

type loadEntry struct {
	load pipes.Load // AgeMS unused: at says when it was sampled
	at   time.Time  // on the lanmanager's clock: arrival minus the age it came with
	rev  uint64     // the book's revision when it arrived
}

type loadBook struct {
	mu      sync.Mutex // Protects following.
	entries map[string]loadEntry
	rev     uint64     // bumped by every frame that changed an entry
	joins   []*session // sessions waiting for the whole book

	// Owned by the relay goroutine.
	sent    uint64 // the revision last passed on
	members map[*session]bool
}

func newLoadBook() *loadBook {
	return &loadBook{entries: map[string]loadEntry{}, members: map[*session]bool{}}
}

// join queues a session for the whole book at the next relay.
func (b *loadBook) join(m *session) {
	b.mu.Lock()
	b.joins = append(b.joins, m)
	b.mu.Unlock()
}

// loadsBudget bounds the entries a master may send in one second: a
// master sends the figures of its resource-balanced children once a
// second, at most MaxLoads to a frame; a master that sends more (a bug, or
// a flood) has the rest of that second's frames dropped before they are
// decoded, so that it cannot keep the dispatcher, which every master's
// frames go through, busy with its lookups.
const loadsBudget = 4 * pipes.MaxLoads

// loadsRoom reports whether master m may send another loads frame this
// second; a frame refused is counted (Server.loadsDropped), and the first
// of each second logged. Called by m's dispatcher only.
func (s *Server) loadsRoom(m *session) bool {
	now := time.Now()
	if now.Sub(m.loadsWindow) >= time.Second {
		m.loadsWindow, m.loadsTaken, m.loadsWarned = now, 0, false
	}
	if m.loadsTaken < loadsBudget {
		return true
	}
	s.loadsDropped.Add(1)
	if !m.loadsWarned {
		m.loadsWarned = true
		m.log.Warn("master sends more loads than a second's budget; dropping the rest of this second's", "budget", loadsBudget)
	}
	return false
}

// loadsFrom records the loads master m sent. Only entries of instances
// that run on m under that allocation are kept: a master cannot speak for
// another's children. It reports how many it kept.
func (s *Server) loadsFrom(m *session, l *pipes.Loads) int {
	m.loadsTaken += len(l.Loads)
	now := time.Now()
	kept := make([]loadEntry, 0, len(l.Loads))
	s.view.mu.RLock()
	for _, e := range l.Loads {
		if s.view.runsOn(e.Instance, e.Alloc, m.info.ID) {
			kept = append(kept, loadEntry{load: e, at: now.Add(-time.Duration(e.AgeMS) * time.Millisecond)})
		}
	}
	s.view.mu.RUnlock()
	if len(kept) == 0 {
		return 0
	}
	b := s.loads
	b.mu.Lock()
	b.rev++
	for _, e := range kept {
		if old, ok := b.entries[e.load.Alloc]; ok && old.at.After(e.at) {
			continue // the newer sample stays: a frame of the master's previous link, or a stale one
		}
		e.rev = b.rev
		e.load.AgeMS = 0
		b.entries[e.load.Alloc] = e
	}
	b.mu.Unlock()
	return len(kept)
}

// runsOn reports whether instance runs under alloc on the master of that
// id. v.mu must be held.
func (v *view) runsOn(instance, alloc, masterID string) bool {
	need, _, err := needs.ParseInstanceName(instance)
	if err != nil {
		return false
	}
	in := v.byNeed[need][instance]
	return in != nil && in.State == needs.Running && in.Alloc == alloc && in.MasterID == masterID
}

// relayLoads passes loads on every loadsEvery until the server closes.
func (s *Server) relayLoads() {
	t := time.NewTicker(loadsEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.relayOnce(time.Now())
		}
	}
}

// relayOnce sends the entries that changed since the last relay to the
// members, and the whole book to the sessions that joined; it drops the
// entries older than loadsKeep.
func (s *Server) relayOnce(now time.Time) {
	b := s.loads
	b.mu.Lock()
	var changed, all []pipes.Load
	joins := b.joins
	b.joins = nil
	fresh := b.rev > b.sent
	for alloc, e := range b.entries {
		if now.Sub(e.at) > loadsKeep {
			delete(b.entries, alloc)
			continue
		}
		if !fresh && len(joins) == 0 {
			continue
		}
		l := e.load
		l.AgeMS = max(now.Sub(e.at).Milliseconds(), 0)
		if e.rev > b.sent {
			changed = append(changed, l)
		}
		if len(joins) > 0 {
			all = append(all, l)
		}
	}
	b.sent = b.rev
	b.mu.Unlock()
	byAlloc := func(x, y pipes.Load) int { return strings.Compare(x.Alloc, y.Alloc) }
	slices.SortFunc(changed, byAlloc)
	slices.SortFunc(all, byAlloc)

	for m := range b.members {
		if m.gone() {
			delete(b.members, m)
		}
	}
	if len(changed) > 0 && len(b.members) > 0 {
		frames := s.prepareLoads(changed)
		for m := range b.members {
			m.sendPrepared(frames)
		}
	}
	if len(joins) == 0 {
		return
	}
	var frames []*pipes.Prepared
	if len(all) > 0 {
		frames = s.prepareLoads(all)
	}
	for _, m := range joins {
		if !m.gone() {
			m.sendPrepared(frames)
			b.members[m] = true
		}
	}
}

// prepareLoads encodes loads in frames of at most pipes.MaxLoads entries,
// once for every session.
func (s *Server) prepareLoads(loads []pipes.Load) []*pipes.Prepared {
	var out []*pipes.Prepared
	for chunk := range slices.Chunk(loads, pipes.MaxLoads) {
		msg, err := pipes.New(pipes.TypeLoads, &pipes.Loads{Loads: chunk})
		if err == nil {
			var p *pipes.Prepared
			if p, err = pipes.Prepare(msg); err == nil {
				out = append(out, p)
				continue
			}
		}
		s.log.Error("encode loads", "err", err) // cannot happen with validated entries
		return nil
	}
	return out
}
