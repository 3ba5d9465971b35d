package pipes

import (
	"fmt"
	"unicode/utf8"

	"berth/needs"
)

// Message types of the mesh on the master ↔ lanmanager link.
const (
	// TypeMesh →M Mesh: the needs with ingress, and the needs some
	// upstream leads to, whole, each time that list changes; sent only to
	// masters whose hello set services.
	TypeMesh = "mesh"
	// TypeIngress →L IngressReport: the master's ingress ports, whole,
	// each time one opens, fails or closes.
	TypeIngress = "ingress"
)

// Limits of the mesh messages.
const (
	MaxMeshNeeds    = 4096 // needs in a Mesh, ports in an IngressReport
	MaxIngressError = 1024 // bytes of IngressPort.Error
)

// MeshNeed is what a master needs to know of a need with ingress.
type MeshNeed struct {
	Name    string          `json:"name"`
	Ingress []needs.Ingress `json:"ingress"`
	Balance string          `json:"balance,omitempty"`
	Weights string          `json:"weights,omitempty"` // the resource score's (needs.Need.BalanceWeights)
	// Gateway: the need is published on the WebSocket gateway; masters
	// with a gatewayaddress serve it too.
	Gateway bool `json:"gateway,omitempty"`
}

// MeshTarget is a need some upstream leads to, with its balance: a
// child's upstream listener balances like the need's ingress.
type MeshTarget struct {
	Name    string `json:"name"`
	Balance string `json:"balance,omitempty"`
	Weights string `json:"weights,omitempty"` // the resource score's (needs.Need.BalanceWeights)
}

// Mesh lists every need with ingress or on the gateway, and every need
// some upstream leads to.
type Mesh struct {
	Needs []MeshNeed `json:"needs"`
	// GatewayToken guards the management paths of the masters' gateways,
	// as the lanmanager's (empty when it runs none).
	GatewayToken string `json:"gateway_token,omitempty"`
	// Targets are the existing needs some need's upstream leads to, each
	// once (a master of an older version ignores them, and balances
	// upstreams round-robin).
	Targets []MeshTarget `json:"targets,omitempty"`
}

// Validate checks a mesh frame: valid names listed once, ingress ports
// 1-65535 of known protocols, known balances.
func (m *Mesh) Validate() error {
	if len(m.GatewayToken) > 256 {
		return &needs.FieldError{Field: "gateway_token", Msg: "longer than 256 bytes"}
	}
	if len(m.Needs) > MaxMeshNeeds {
		return &needs.FieldError{Field: "needs", Msg: fmt.Sprintf("%d needs, more than %d", len(m.Needs), MaxMeshNeeds)}
	}
	if len(m.Targets) > MaxMeshNeeds {
		return &needs.FieldError{Field: "targets", Msg: fmt.Sprintf("%d needs, more than %d", len(m.Targets), MaxMeshNeeds)}
	}
	seenTarget := map[string]bool{}
	for i, t := range m.Targets {
		if err := needs.ValidateName(fmt.Sprintf("targets[%d].name", i), t.Name); err != nil {
			return err
		}
		if seenTarget[t.Name] {
			return &needs.FieldError{Field: fmt.Sprintf("targets[%d].name", i), Msg: fmt.Sprintf("%q is listed twice", t.Name)}
		}
		seenTarget[t.Name] = true
		probe := needs.Need{Name: t.Name, Command: []string{"x"}, Balance: t.Balance, BalanceWeights: t.Weights}
		if err := probe.Validate(); err != nil {
			return &needs.FieldError{Field: fmt.Sprintf("targets[%d]", i), Msg: err.Error()}
		}
	}
	seen := map[string]bool{}
	for i, n := range m.Needs {
		if err := needs.ValidateName(fmt.Sprintf("needs[%d].name", i), n.Name); err != nil {
			return err
		}
		if seen[n.Name] {
			return &needs.FieldError{Field: fmt.Sprintf("needs[%d].name", i), Msg: fmt.Sprintf("%q is listed twice", n.Name)}
		}
		seen[n.Name] = true
		// The need's own rules, with the protocols its ingress names.
		probe := needs.Need{Name: n.Name, Command: []string{"x"}, Ingress: n.Ingress, Balance: n.Balance, BalanceWeights: n.Weights,
			Gateway: n.Gateway}
		for _, in := range n.Ingress {
			probe.Protocols = append(probe.Protocols, in.Protocol)
		}
		if n.Gateway && !probe.HasProtocol(needs.HTTP) {
			probe.Protocols = append(probe.Protocols, needs.HTTP)
		}
		if len(n.Ingress) == 0 && !n.Gateway {
			return &needs.FieldError{Field: fmt.Sprintf("needs[%d].ingress", i), Msg: "empty, and not on the gateway"}
		}
		if err := probe.Validate(); err != nil {
			return &needs.FieldError{Field: fmt.Sprintf("needs[%d]", i), Msg: err.Error()}
		}
	}
	return nil
}

// IngressPort is one ingress port of a master: open, or not and why.
type IngressPort = needs.IngressPort

// IngressReport is every ingress port a master should have open.
type IngressReport struct {
	Ports []IngressPort `json:"ports"`
}

// Validate checks an ingress report.
func (r *IngressReport) Validate() error {
	if len(r.Ports) > MaxMeshNeeds {
		return &needs.FieldError{Field: "ports", Msg: fmt.Sprintf("%d ports, more than %d", len(r.Ports), MaxMeshNeeds)}
	}
	for i, p := range r.Ports {
		field := fmt.Sprintf("ports[%d]", i)
		if err := needs.ValidateName(field+".need", p.Need); err != nil {
			return err
		}
		if err := p.Protocol.Validate(); err != nil {
			return &needs.FieldError{Field: field + ".protocol", Msg: err.Error()}
		}
		if p.Port < 1 || p.Port > 65535 {
			return &needs.FieldError{Field: field + ".port", Msg: fmt.Sprintf("%d is outside 1-65535", p.Port)}
		}
		if len(p.Error) > MaxIngressError || !utf8.ValidString(p.Error) {
			return &needs.FieldError{Field: field + ".error", Msg: fmt.Sprintf("longer than %d bytes or not UTF-8", MaxIngressError)}
		}
		if p.Open && p.Error != "" {
			return &needs.FieldError{Field: field + ".error", Msg: "set on an open port"}
		}
	}
	return nil
}
