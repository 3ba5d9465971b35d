package pipes

import (
	"fmt"
	"net"
	"strconv"
	"unicode/utf8"

	"berth/needs"
)

// Lifecycle messages of a child's upstreams and peers on its control socket,
// master→child: the event set of @kumori/tcp-proxy (ready, change, error,
// close). The master sends them only to children whose need has upstreams
// or peers.
const (
	// TypeMeshReady MeshState: sent right after each connection of the
	// child's pipe; the child's upstream listeners are open, here they are
	// with their targets, and its peers.
	TypeMeshReady = "mesh.ready"
	// TypeMeshChange MeshState: the peers or an upstream's targets
	// changed; the whole new state.
	TypeMeshChange = "mesh.change"
	// TypeMeshError MeshError: something of the child's mesh does not
	// work, e.g. an upstream whose need has no running instance.
	TypeMeshError = "mesh.error"
	// TypeMeshClose MeshClose: the master is stopping the child; no change
	// follows. The upstream listeners stay open until the child exits.
	TypeMeshClose = "mesh.close"
)

// Limits of the lifecycle messages.
const (
	MaxPeers        = 4096 // entries of a peers or targets list
	MaxMeshErrorLen = 1024 // bytes of a MeshError message, a close reason or an upstream error
)

// Peer is one running instance, as the peers file (BERTH_PEERS_FILE), the
// peers of a change and an upstream's targets list it.
type Peer struct {
	Instance string                 `json:"instance"`
	Master   string                 `json:"master"`
	Address  string                 `json:"address"`
	Ports    map[needs.Protocol]int `json:"ports"`
}

// Validate checks a peer; field names are relative to it.
func (p *Peer) Validate() error {
	if _, _, err := needs.ParseInstanceName(p.Instance); err != nil {
		return err
	}
	if err := needs.ValidateName("master", p.Master); err != nil {
		return err
	}
	if err := validateHost("address", p.Address); err != nil {
		return err
	}
	return validatePorts(p.Ports)
}

// UpstreamState is one of a child's upstreams: its loopback listener and
// the running instances its connections go to.
type UpstreamState struct {
	Name     string         `json:"name"`
	Need     string         `json:"need"`
	Protocol needs.Protocol `json:"protocol"`
	// Address is the listener, 127.0.0.1:PORT (BERTH_UPSTREAM_<NAME>);
	// empty while it is not open (see Error).
	Address string `json:"address,omitempty"`
	// Targets are Need's running instances with a Protocol port: each
	// connection goes to one of them. While there is none, the listener
	// accepts and closes connections.
	Targets []Peer `json:"targets"`
	// Error says why the listener is not open, or why it leads nowhere.
	Error string `json:"error,omitempty"`
}

// Validate checks an upstream's state; field names are relative to it.
func (u *UpstreamState) Validate() error {
	if len(u.Name) == 0 || len(u.Name) > 32 {
		return &needs.FieldError{Field: "name", Msg: fmt.Sprintf("%q must be 1-32 bytes", u.Name)}
	}
	for i := 0; i < len(u.Name); i++ {
		if c := u.Name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return &needs.FieldError{Field: "name", Msg: fmt.Sprintf("%q has a byte outside [a-z0-9_-]", u.Name)}
		}
	}
	if err := needs.ValidateName("need", u.Need); err != nil {
		return err
	}
	if err := u.Protocol.Validate(); err != nil {
		return &needs.FieldError{Field: "protocol", Msg: err.Error()}
	}
	if u.Address != "" {
		host, port, err := net.SplitHostPort(u.Address)
		if err != nil {
			return &needs.FieldError{Field: "address", Msg: err.Error()}
		}
		if err := ValidateAddress("address", host); err != nil {
			return err
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return &needs.FieldError{Field: "address", Msg: fmt.Sprintf("port %q is outside 1-65535", port)}
		}
	}
	if err := validateText("error", u.Error); err != nil {
		return err
	}
	return validatePeers("targets", u.Targets)
}

// MeshState is the body of mesh.ready and mesh.change: the whole state of
// a child's upstreams and peers.
type MeshState struct {
	Upstreams []UpstreamState `json:"upstreams,omitempty"`
	// Peers are the running instances of the child's own need (itself
	// included once it runs), as in its peers file; null when the need
	// has no peers.
	Peers []Peer `json:"peers"`
}

// Validate checks a mesh state.
func (s *MeshState) Validate() error {
	if len(s.Upstreams) > needs.MaxUpstreams {
		return &needs.FieldError{Field: "upstreams", Msg: fmt.Sprintf("%d upstreams, more than %d", len(s.Upstreams), needs.MaxUpstreams)}
	}
	for i := range s.Upstreams {
		if err := s.Upstreams[i].Validate(); err != nil {
			return fmt.Errorf("upstreams[%d]: %w", i, err)
		}
	}
	return validatePeers("peers", s.Peers)
}

// MeshError is the body of mesh.error.
type MeshError struct {
	// Upstream names the upstream concerned, if any.
	Upstream string `json:"upstream,omitempty"`
	// Need is the need it leads to (with Upstream), or the child's own.
	Need    string `json:"need,omitempty"`
	Message string `json:"message"`
}

// Validate checks a mesh error.
func (e *MeshError) Validate() error {
	if e.Need != "" {
		if err := needs.ValidateName("need", e.Need); err != nil {
			return err
		}
	}
	if e.Message == "" {
		return &needs.FieldError{Field: "message", Msg: "empty"}
	}
	if err := validateText("upstream", e.Upstream); err != nil {
		return err
	}
	return validateText("message", e.Message)
}

// MeshClose is the body of mesh.close.
type MeshClose struct {
	Reason string `json:"reason,omitempty"`
}

// Validate checks a close.
func (c *MeshClose) Validate() error { return validateText("reason", c.Reason) }

func validatePeers(field string, ps []Peer) error {
	if len(ps) > MaxPeers {
		return &needs.FieldError{Field: field, Msg: fmt.Sprintf("%d entries, more than %d", len(ps), MaxPeers)}
	}
	for i := range ps {
		if err := ps[i].Validate(); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
	}
	return nil
}

func validateText(field, s string) error {
	if len(s) > MaxMeshErrorLen || !utf8.ValidString(s) {
		return &needs.FieldError{Field: field, Msg: fmt.Sprintf("longer than %d bytes or not UTF-8", MaxMeshErrorLen)}
	}
	return nil
}
