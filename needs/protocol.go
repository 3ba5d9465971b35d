package needs

import (
	"fmt"
	"strings"
)

// Protocol names a kind of port a master leases for a child.
type Protocol string

// The protocols a need may ask for.
const (
	TCP  Protocol = "tcp"
	HTTP Protocol = "http"
	WS   Protocol = "ws"
)

// Protocols lists every known protocol in canonical order.
var Protocols = []Protocol{TCP, HTTP, WS}

// Validate reports whether p is a known protocol.
func (p Protocol) Validate() error {
	switch p {
	case TCP, HTTP, WS:
		return nil
	}
	return fmt.Errorf("unknown protocol %q (want tcp, http or ws)", string(p))
}

// ClientFirst reports whether p's clients speak before the server does:
// HTTP and WebSocket (an HTTP upgrade) do; plain tcp is not assumed to.
// The mesh holds back a dial's last handshake ACK for such protocols
// (mesh.Config.ClientFirst).
func (p Protocol) ClientFirst() bool { return p == HTTP || p == WS }

// EnvName is the child's environment variable holding the port of p,
// e.g. BERTH_PORT_HTTP.
func (p Protocol) EnvName() string { return "BERTH_PORT_" + strings.ToUpper(string(p)) }

// ParseProtocols parses a comma-separated list such as "tcp,http". An empty
// string is no protocols.
func ParseProtocols(s string) ([]Protocol, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []Protocol
	for i, part := range strings.Split(s, ",") {
		p := Protocol(strings.ToLower(strings.TrimSpace(part)))
		if err := p.Validate(); err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("protocols[%d]", i), Msg: err.Error()}
		}
		out = append(out, p)
	}
	return out, nil
}
