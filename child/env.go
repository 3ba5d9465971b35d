package child

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"berth/needs"
)

// Environment variables a berth master sets for its children.
const (
	EnvNeed     = "BERTH_NEED"     // the need's name, e.g. "web"
	EnvInstance = "BERTH_INSTANCE" // the instance's name, e.g. "web.2"
	EnvHost     = "BERTH_HOST"     // the host to listen on
	EnvPipe     = "BERTH_PIPE"     // path of the master's Unix socket for this child
	EnvPort     = "PORT"           // the child's main port
	// EnvPeersFile is the path of the peers file of a need declared with
	// --peers (see ReadPeers).
	EnvPeersFile = "BERTH_PEERS_FILE"
	// EnvUpstreamPrefix starts the variable of each upstream,
	// BERTH_UPSTREAM_<NAME> = 127.0.0.1:PORT (see needs.Upstream.EnvName).
	EnvUpstreamPrefix = "BERTH_UPSTREAM_"
	// The port of each protocol is in needs.Protocol.EnvName, for example
	// BERTH_PORT_HTTP.

	// The IPC hub of the LAN (see IPCFromEnv); set when the lanmanager
	// serves one.
	EnvIPC      = "BERTH_IPC"       // the hub's address, ws://host:port
	EnvIPCHost  = "BERTH_IPC_HOST"  // its host alone, for clients configured by host and port (AceBase)
	EnvIPCPort  = "BERTH_IPC_PORT"  // its port alone
	EnvIPCToken = "BERTH_IPC_TOKEN" // the hub's token; empty when it has none
	EnvIPCGroup = "BERTH_IPC_GROUP" // the group the need's processes share
)

// Env is what a berth master tells a child through its environment.
type Env struct {
	Need     string
	Instance string
	Host     string
	// Pipe is the path of the control socket; empty when not under berth.
	Pipe string
	// Ports holds the port of each protocol the need asked for; nil when
	// none is set.
	Ports map[needs.Protocol]int
	// Port is PORT, 0 when unset.
	Port int
	// PeersFile is BERTH_PEERS_FILE; empty unless the need has peers.
	PeersFile string
	// Upstreams maps each upstream's variable, without the
	// BERTH_UPSTREAM_ prefix (the name upper-cased, '-' as '_'), to its
	// loopback address; nil when there is none.
	Upstreams map[string]string
}

// FromEnv reads the child's environment. Outside berth none of the variables
// is set and it returns a zero Env and no error. A malformed port variable is
// an error naming the variable; it matches needs.ErrInvalid.
func FromEnv() (Env, error) {
	e := Env{
		Need:     os.Getenv(EnvNeed),
		Instance: os.Getenv(EnvInstance),
		Host:     os.Getenv(EnvHost),
		Pipe:     os.Getenv(EnvPipe),

		PeersFile: os.Getenv(EnvPeersFile),
	}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, EnvUpstreamPrefix); ok && name != "" && v != "" {
			if e.Upstreams == nil {
				e.Upstreams = map[string]string{}
			}
			e.Upstreams[name] = v
		}
	}
	for _, p := range needs.Protocols {
		port, err := portVar(p.EnvName())
		if err != nil {
			return Env{}, err
		}
		if port != 0 {
			if e.Ports == nil {
				e.Ports = make(map[needs.Protocol]int)
			}
			e.Ports[p] = port
		}
	}
	port, err := portVar(EnvPort)
	if err != nil {
		return Env{}, err
	}
	e.Port = port
	return e, nil
}

// portVar parses the port in variable name; 0 when it is unset or empty.
func portVar(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := parsePort(v)
	if err != nil {
		return 0, &needs.FieldError{Field: name, Msg: err.Error()}
	}
	return n, nil
}

// parsePort parses a port number, 1 to 65535.
func parsePort(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", v)
	}
	return n, nil
}

// Addr returns the host:port to listen on for protocol p, or "" when p has
// no port. An empty Host gives ":port", which listens on every address.
func (e Env) Addr(p needs.Protocol) string {
	port, ok := e.Ports[p]
	if !ok {
		return ""
	}
	return net.JoinHostPort(e.Host, strconv.Itoa(port))
}

// Upstream returns the address of the upstream named name (as declared,
// e.g. "db" or "cache-1"), or "" when the child has none by that name.
func (e Env) Upstream(name string) string {
	return e.Upstreams[strings.ReplaceAll(strings.ToUpper(name), "-", "_")]
}
