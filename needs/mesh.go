package needs

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var upstreamNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

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

// Upstream gives a need's children a loopback address, in
// BERTH_UPSTREAM_<NAME>, whose connections are tunnelled to a running
// instance of another need (kumori's channels, without a sidecar).
type Upstream struct {
	Name     string   `json:"name"`
	Need     string   `json:"need"`
	Protocol Protocol `json:"protocol"`
}

func (u Upstream) String() string { return fmt.Sprintf("%s=%s:%s", u.Name, u.Need, u.Protocol) }

// EnvName is the variable that holds the upstream's address:
// BERTH_UPSTREAM_ and the name upper-cased, '-' as '_'.
func (u Upstream) EnvName() string {
	return "BERTH_UPSTREAM_" + strings.ReplaceAll(strings.ToUpper(u.Name), "-", "_")
}

// ParseUpstreams parses "NAME=NEED:PROTOCOL" values of --upstream.
func ParseUpstreams(vals []string) ([]Upstream, error) {
	var out []Upstream
	for _, v := range vals {
		name, target, ok := strings.Cut(v, "=")
		need, proto, ok2 := strings.Cut(target, ":")
		if !ok || !ok2 {
			return nil, &FieldError{Field: "upstream", Msg: fmt.Sprintf("%q is not NAME=NEED:PROTOCOL (e.g. db=postgres:tcp)", v)}
		}
		out = append(out, Upstream{Name: name, Need: need, Protocol: Protocol(proto)})
	}
	return out, nil
}

// Signals a need may name in PeersSignal.
var peerSignals = []string{"HUP", "USR1", "USR2"}

// MaxUpstreams bounds a need's upstreams.
const MaxUpstreams = 64

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
	if len(n.Upstreams) > MaxUpstreams {
		return &FieldError{Field: "upstreams", Msg: fmt.Sprintf("%d upstreams, more than %d", len(n.Upstreams), MaxUpstreams)}
	}
	seenUp := map[string]bool{}
	for i, u := range n.Upstreams {
		field := fmt.Sprintf("upstreams[%d]", i)
		if !upstreamNameRE.MatchString(u.Name) {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: name %q: want 1-32 of a-z, 0-9, '-' and '_', starting with a letter (it becomes %s)", u, u.Name, u.EnvName())}
		}
		env := u.EnvName()
		if seenUp[env] {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: %s is set by another upstream", u, env)}
		}
		seenUp[env] = true
		if err := ValidateName(field+".need", u.Need); err != nil {
			return err
		}
		if err := u.Protocol.Validate(); err != nil {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%s: %v", u, err)}
		}
	}
	if n.Gateway && !n.HasProtocol(HTTP) {
		return &FieldError{Field: "gateway", Msg: "the gateway sends its requests to an http port: give --protocols http"}
	}
	if n.PeersSignal != "" {
		if !n.Peers {
			return &FieldError{Field: "peers_signal", Msg: "signals a change of peers: give --peers too"}
		}
		ok := false
		for _, s := range peerSignals {
			ok = ok || n.PeersSignal == s
		}
		if !ok {
			return &FieldError{Field: "peers_signal", Msg: fmt.Sprintf("%q: want one of %s", n.PeersSignal, strings.Join(peerSignals, ", "))}
		}
	}
	if n.BalanceWeights != "" {
		if n.Balance != BalanceResource {
			return &FieldError{Field: "balance_weights", Msg: "weigh the resource score: only with --balance resource"}
		}
		if err := validateWeights(n.BalanceWeights); err != nil {
			return &FieldError{Field: "balance_weights", Msg: err.Error()}
		}
	}
	if n.Balance != "" {
		ok := false
		for _, b := range Balances {
			ok = ok || n.Balance == b
		}
		if !ok {
			return &FieldError{Field: "balance", Msg: fmt.Sprintf("%q: want one of %s", n.Balance, strings.Join(Balances, ", "))}
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

// Meshed reports whether the masters need the need's definition and
// running set: it has ingress, or is on the gateway (which masters may
// serve too).
func (n *Need) Meshed() bool { return len(n.Ingress) > 0 || n.Gateway }

// BalanceOrDefault is the need's strategy, round-robin by default.
func (n *Need) BalanceOrDefault() string {
	if n.Balance == "" {
		return BalanceRoundRobin
	}
	return n.Balance
}

// validateWeights checks "conns=10,cpu=2,heap=100": each key once, each
// weight a number from 0 to 1e6 (the mesh package reads them).
func validateWeights(s string) error {
	if len(s) > 256 {
		return fmt.Errorf("%d bytes, more than 256", len(s))
	}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		key = strings.TrimSpace(key)
		if !ok || (key != "conns" && key != "cpu" && key != "heap") {
			return fmt.Errorf("%q: want conns=N, cpu=N or heap=N", item)
		}
		if seen[key] {
			return fmt.Errorf("%q: %s given twice", item, key)
		}
		seen[key] = true
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || !(f >= 0 && f <= 1e6) {
			return fmt.Errorf("%q: want a number from 0 to 1e6", item)
		}
	}
	return nil
}
