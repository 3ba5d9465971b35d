package lan

import (
	"fmt"
	"time"

	"berth/lifecycle"
	"berth/needs"
	"berth/pipes"
)

// livenessLocked runs on placer passes (at most one every twentieth of a
// heartbeat, see closeRounds). A connected master not heard
// from for MasterTTL is closed and lost at once; a quiet one is pinged
// every heartbeat (a master that answers pings therefore stays alive even
// if it never pings by itself); a disconnected master is lost MasterTTL
// after it was last heard. due is told when the next check is needed.
//
// Every time compared here comes from Config.Clock. time.Now's readings
// carry the monotonic clock, and Time.Sub uses it when both operands have
// one, so a step of the wall clock (NTP, an operator, a VM resume) moves
// no deadline. That is why these times are never passed through UTC, Round
// or a JSON round trip, which strip the monotonic reading.
func (s *Server) livenessLocked(now time.Time, due func(time.Time)) {
	ttl, hb := s.cfg.MasterTTL, s.heartbeat()
	for _, m := range s.masters {
		seen := m.seen()
		if now.Sub(seen) >= ttl {
			m.log.Warn("master not heard from; declaring it lost", "silent_for", now.Sub(seen).Round(time.Millisecond), "ttl", ttl)
			m.close()
			s.dropSessionLocked(m, fmt.Sprintf("not heard from for %s", ttl))
			continue
		}
		due(seen.Add(ttl))
		if now.Sub(seen) >= hb && now.Sub(m.lastPing) >= hb {
			m.sendMsg(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing})
			m.lastPing = now
		}
		next := seen
		if m.lastPing.After(next) {
			next = m.lastPing
		}
		due(next.Add(hb))
	}
	s.expireGoneLocked(now, due)
}

// expireGoneLocked declares lost the disconnected masters not heard from
// for MasterTTL: their instances are placed again (or move to a handoff
// under way), and handoffs they were running are dropped.
func (s *Server) expireGoneLocked(now time.Time, due func(time.Time)) {
	for id, g := range s.gone {
		if left := s.cfg.MasterTTL - now.Sub(g.since); left > 0 {
			due(g.since.Add(s.cfg.MasterTTL))
			continue
		}
		delete(s.gone, id)
		why := fmt.Sprintf("master %s lost (not heard from for %s)", g.name, s.cfg.MasterTTL)
		if !g.heard {
			why = fmt.Sprintf("master %s lost (not back within %s of the lanmanager's start)", g.name, s.cfg.MasterTTL)
		}
		moved := 0
		for _, in := range s.core.Insts {
			if in.MasterID == id && in.State.Placed() {
				moved++
			}
		}
		s.log.Warn("master lost", "master", g.name, "id", id, "instances", moved)
		info := &needs.Master{ID: id, Name: g.name, Draining: s.core.Draining(g.name)}
		if g.heard {
			info.LastSeen = g.since.UTC()
		}
		s.publishStepLocked(Event{Time: time.Now(), Kind: EventMasterLost, Master: info,
			Message: fmt.Sprintf("%s; %d instance(s) placed again", why, moved)},
			lifecycle.MasterLost{MasterID: id, Why: why})
		s.kick()
	}
}
