package needs

import (
	"fmt"
	"strconv"
	"strings"
)

// Ingress publishes one of a need's protocols on a port that every master
// opens on its ingress address, balancing each new connection across the
// need's running instances anywhere on the LAN.
type Ingress struct {
	Protocol Protocol `json:"protocol"`
	Port     int      `json:"port"`
}

func (i Ingress) String() string { return fmt.Sprintf("%s=%d", i.Protocol, i.Port) }

// IngressPort is one ingress port of a master: open, or not and why.
type IngressPort struct {
	Need     string   `json:"need"`
	Protocol Protocol `json:"protocol"`
	Port     int      `json:"port"`
	Open     bool     `json:"open"`
	Error    string   `json:"error,omitempty"`
}

// Balance strategies of ingress (the mesh package implements them).
const (
	BalanceRoundRobin = "round-robin"
	BalanceLeastConn  = "least-conn"
	BalanceResource   = "resource"
	BalanceHash       = "hash"
)

// Balances lists the strategies a need may name.
var Balances = []string{BalanceRoundRobin, BalanceLeastConn, BalanceResource, BalanceHash}

// ParseIngress parses "PROTOCOL=PORT" values of --ingress.
func ParseIngress(vals []string) ([]Ingress, error) {
	var out []Ingress
	for _, v := range vals {
		p, port, ok := strings.Cut(v, "=")
		if !ok {
			return nil, &FieldError{Field: "ingress", Msg: fmt.Sprintf("%q is not PROTOCOL=PORT (e.g. http=8080)", v)}
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, &FieldError{Field: "ingress", Msg: fmt.Sprintf("%q: port %q is not a number", v, port)}
		}
		out = append(out, Ingress{Protocol: Protocol(strings.TrimSpace(p)), Port: n})
	}
	return out, nil
}

// validateMesh checks a need's ingress and balance.
func (n *Need) validateMesh() error {
	seenProto := map[Protocol]bool{}
	seenPort := map[int]bool{}
	for i, in := range n.Ingress {
		field := fmt.Sprintf("ingress[%d]", i)
		if err := in.Protocol.Validate(); err != nil {
			return &FieldError{Field: field, Msg: err.Error()}
		}
		if !n.HasProtocol(in.Protocol) {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: the need declares no %s port to send the connections to (give --protocols %s)", in, in.Protocol, in.Protocol)}
		}
		if in.Port < 1 || in.Port > 65535 {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: port must be 1-65535", in)}
		}
		if seenProto[in.Protocol] {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: protocol %s has an ingress already", in, in.Protocol)}
		}
		if seenPort[in.Port] {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: port %d is listed twice", in, in.Port)}
		}
		seenProto[in.Protocol], seenPort[in.Port] = true, true
	}
	if n.Balance != "" {
		ok := false
		for _, b := range Balances {
			ok = ok || n.Balance == b
		}
		if !ok {
			return &FieldError{Field: "balance", Msg: fmt.Sprintf("%q: want one of %s", n.Balance, strings.Join(Balances, ", "))}
		}
		if len(n.Ingress) == 0 {
			return &FieldError{Field: "balance", Msg: "balances ingress: give --ingress too"}
		}
	}
	return nil
}

// HasProtocol reports whether the need declares a port of protocol p.
func (n *Need) HasProtocol(p Protocol) bool {
	for _, q := range n.Protocols {
		if q == p {
			return true
		}
	}
	return false
}

// Meshed reports whether the masters need the need's running set: it has
// ingress.
func (n *Need) Meshed() bool { return len(n.Ingress) > 0 }

// BalanceOrDefault is the need's strategy, round-robin by default.
func (n *Need) BalanceOrDefault() string {
	if n.Balance == "" {
		return BalanceRoundRobin
	}
	return n.Balance
}
