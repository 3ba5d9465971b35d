package lan

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"berth/needs"
	"berth/pipes"
)

// The mesh (docs/mesh.md): masters that asked for the running set
// (pipes.Hello.Services) also get the list of needs with ingress, and of
// the needs some upstream leads to with their balance, in a "mesh" frame
// after their welcome and whenever that list changes, and the running set
// of those needs only. Each master opens the ingress ports and reports
// them in "ingress" frames, which master ls, need show and the events
// show.

// meshLocked is the mesh frame: every need with ingress, by name, and
// every existing need some upstream leads to.
func (s *Server) meshLocked() *pipes.Mesh {
	m := &pipes.Mesh{Needs: []pipes.MeshNeed{}}
	if s.cfg.Gateway != nil {
		m.GatewayToken = s.cfg.Gateway.token
	}
	targets := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(s.core.Needs)) {
		n := s.core.Needs[name]
		if n.Meshed() {
			m.Needs = append(m.Needs, pipes.MeshNeed{Name: n.Name, Ingress: slices.Clone(n.Ingress), Balance: n.Balance, Weights: n.BalanceWeights,
				Gateway: n.Gateway})
		}
		for _, u := range n.Upstreams {
			targets[u.Need] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		if n := s.core.Needs[name]; n != nil {
			m.Targets = append(m.Targets, pipes.MeshTarget{Name: n.Name, Balance: n.Balance, Weights: n.BalanceWeights})
		}
	}
	return m
}

// sameMesh reports whether two mesh frames list the same needs and
// targets (the gateway token does not change while the server runs).
func sameMesh(a, b *pipes.Mesh) bool {
	return slices.EqualFunc(a.Needs, b.Needs, func(a, b pipes.MeshNeed) bool {
		return a.Name == b.Name && a.Balance == b.Balance && a.Weights == b.Weights && a.Gateway == b.Gateway && slices.Equal(a.Ingress, b.Ingress)
	}) && slices.Equal(a.Targets, b.Targets)
}

// meshChangedLocked sends the mesh frame to every master that asked for
// the running set, if a change of needs changed it.
func (s *Server) meshChangedLocked(put []*needs.Need, deleted []string) {
	if len(put) == 0 && len(deleted) == 0 {
		return
	}
	mesh := s.meshLocked()
	if sameMesh(mesh, s.meshSent) {
		return
	}
	s.meshSent = mesh
	for _, m := range s.masters {
		if m.services {
			m.send(pipes.TypeMesh, mesh)
		}
	}
}

// ingressFrom records a master's ingress report and publishes what
// changed: a port that opened, or one that failed with its error.
func (s *Server) ingressFrom(m *session, r *pipes.IngressReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[string]needs.IngressPort{}
	for _, p := range m.ingress {
		old[ingressKey(p)] = p
	}
	m.ingress = slices.Clone(r.Ports)
	var opened, failed []string
	for _, p := range r.Ports {
		if o, ok := old[ingressKey(p)]; ok && o.Open == p.Open && o.Error == p.Error {
			continue
		}
		if p.Open {
			opened = append(opened, fmt.Sprintf("%s %s:%d", p.Need, p.Protocol, p.Port))
		} else if p.Error != "" {
			failed = append(failed, fmt.Sprintf("%s %s:%d: %s", p.Need, p.Protocol, p.Port, p.Error))
		}
	}
	if len(opened)+len(failed) == 0 {
		return
	}
	if len(failed) > 0 {
		m.log.Warn("master cannot open ingress", "ports", strings.Join(failed, "; "))
	}
	msg := ""
	if len(opened) > 0 {
		msg = "opened " + strings.Join(opened, ", ")
	}
	if len(failed) > 0 {
		if msg != "" {
			msg += "; "
		}
		msg += "cannot open " + strings.Join(failed, "; ")
	}
	info := m.info
	info.Ingress = slices.Clone(m.ingress)
	s.publishLocked(Event{Time: time.Now(), Kind: EventMasterIngress, Master: &info, Message: msg})
}

func ingressKey(p needs.IngressPort) string {
	return fmt.Sprintf("%s/%s/%d", p.Need, p.Protocol, p.Port)
}

// ingressConflictLocked says why n's ingress cannot be declared: a port
// inside a connected master's lease range, or claimed by another need.
func (s *Server) ingressConflictLocked(n *needs.Need) error {
	for _, in := range n.Ingress {
		for _, o := range s.core.Needs {
			if o.Name == n.Name {
				continue
			}
			for _, oi := range o.Ingress {
				if oi.Port == in.Port {
					return &conflictError{needs.ErrExists, fmt.Sprintf("ingress %s: port %d is already the ingress of need %q", in, in.Port, o.Name)}
				}
			}
		}
		for _, m := range s.masters {
			for p, r := range m.info.Ranges {
				if in.Port >= r[0] && in.Port <= r[1] {
					return &conflictError{needs.ErrInvalid, fmt.Sprintf("ingress %s: port %d is in master %s's %s lease range %d-%d: pick a port outside every master's ranges", in, in.Port, m.info.Name, p, r[0], r[1])}
				}
			}
		}
	}
	return nil
}

// conflictError is a refusal that matches kind (needs.ErrExists: 409,
// needs.ErrInvalid: 400) and says only msg.
type conflictError struct {
	kind error
	msg  string
}

func (e *conflictError) Error() string        { return e.msg }
func (e *conflictError) Is(target error) bool { return target == e.kind }

// upstreamTargets names the needs that the upstreams of ns lead to: a new
// upstream puts its target's running set, left out until then, in the
// set pushed to the masters.
func upstreamTargets(ns []*needs.Need) []string {
	var out []string
	for _, n := range ns {
		for _, u := range n.Upstreams {
			out = append(out, u.Need)
		}
	}
	return out
}
