package ipchub

// The hub's routing. Every function here runs with s.mu held (read or
// write): membership cannot change under it, so the notices of one event
// reach every peer in the same order.

// sendLocked queues msg to p and counts it.
func (s *Server) sendLocked(p *peer, msg []byte) {
	ok, full := p.enqueue(msg)
	switch {
	case ok:
		s.messages.Add(1)
		s.bytes.Add(int64(len(msg)))
		return
	case full:
		s.slow.Add(1)
		s.log.Warn("ipc peer disconnected: slow consumer", "group", p.group, "id", p.id, "remote", p.remote)
	}
	s.drops.Add(1)
}

// othersLocked calls fn for every peer of from's group but from.
func (s *Server) othersLocked(from *peer, fn func(*peer)) {
	for _, p := range s.groups[from.group] {
		if p != from {
			fn(p)
		}
	}
}

// routeLocked delivers f's payload, sent by from, to its recipients.
func (s *Server) routeLocked(from *peer, f frame) {
	switch f.kind {
	case kindPing:
		s.sendLocked(from, []byte("pong"))
	case kindMalformed:
		s.drops.Add(1)
	case kindTo:
		if p := s.groups[from.group][f.to]; p != nil {
			s.sendLocked(p, f.payload)
		} else {
			s.drops.Add(1)
		}
	case kindAll, kindBroadcast:
		s.othersLocked(from, func(p *peer) { s.sendLocked(p, f.payload) })
	}
}

// recipientsLocked returns the peers f, sent by from, is for.
func (s *Server) recipientsLocked(from *peer, f frame) []*peer {
	switch f.kind {
	case kindTo:
		if p := s.groups[from.group][f.to]; p != nil {
			return []*peer{p}
		}
	case kindAll, kindBroadcast:
		var out []*peer
		s.othersLocked(from, func(p *peer) { out = append(out, p) })
		return out
	}
	return nil
}

// joinLocked adds p to its group. A peer with the same id is removed first
// (its disconnect notice goes out before p's connect notice) and shut.
func (s *Server) joinLocked(p *peer) {
	if old := s.groups[p.group][p.id]; old != nil {
		s.leaveLocked(old)
		old.shut(closeReplaced)
	}
	g := s.groups[p.group]
	if g == nil {
		g = map[string]*peer{}
		s.groups[p.group] = g
	}
	g[p.id] = p
	s.sendLocked(p, s.welcome)
	notice := []byte("connect:" + p.id)
	s.othersLocked(p, func(o *peer) { s.sendLocked(o, notice) })
}

// leaveLocked removes p from its group, if it is still there, and tells
// the others.
func (s *Server) leaveLocked(p *peer) {
	g := s.groups[p.group]
	if g[p.id] != p {
		return
	}
	delete(g, p.id)
	if len(g) == 0 {
		delete(s.groups, p.group)
	}
	notice := []byte("disconnect:" + p.id)
	s.othersLocked(p, func(o *peer) { s.sendLocked(o, notice) })
}
