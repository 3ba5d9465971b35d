package needs

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Need is a declaration of what should run.
type Need struct {
	// Name is a DNS label: 1–63 of a-z, 0-9 and '-', not starting or ending
	// with '-'.
	Name string `json:"name"`
	// Command is the program and its arguments. ${VAR} in the arguments is
	// expanded from the child's environment when it is spawned.
	Command []string `json:"command"`
	// Instances is the desired number of instances; 0 is allowed.
	Instances int `json:"instances"`
	// Protocols lists the ports each instance gets, at most one per protocol.
	Protocols []Protocol `json:"protocols"`
	// Env is extra environment for the child.
	Env map[string]string `json:"env,omitempty"`
	// Machine, when set, pins the need to the master of that name.
	Machine string `json:"machine,omitempty"`
	// Restart is the restart policy; nil means the defaults.
	Restart *RestartPolicy `json:"restart,omitempty"`
	// SocketActivation asks the master to bind the ports itself and pass the
	// listening sockets to the child (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).
	SocketActivation bool `json:"socket_activation,omitempty"`
	// IPCGroup is the IPC hub group the need's children are given
	// (BERTH_IPC_GROUP); empty means the need's name. Needs that name one
	// group share it.
	IPCGroup string `json:"ipc_group,omitempty"`
	// Ingress publishes protocols of the need on ports every master opens
	// on its ingress address (see docs/mesh.md); Balance picks an instance
	// for each new connection (default round-robin).
	Ingress []Ingress `json:"ingress,omitempty"`
	Balance string    `json:"balance,omitempty"`
	// BalanceWeights are the resource score's weights,
	// "conns=10,cpu=2,heap=100" (any of them; the others keep those
	// defaults); only with Balance resource.
	BalanceWeights string `json:"balance_weights,omitempty"`
	// Upstreams give the children loopback addresses tunnelled to other
	// needs; Peers gives them BERTH_PEERS_FILE, the need's running set,
	// and PeersSignal (HUP, USR1, USR2) signals them when it changes.
	Upstreams []Upstream `json:"upstreams,omitempty"`
	// Gateway publishes the need on the WebSocket gateway at /{name}; its
	// http port answers the gateway's requests (docs/gateway.md).
	Gateway     bool   `json:"gateway,omitempty"`
	Peers       bool   `json:"peers,omitempty"`
	PeersSignal string `json:"peers_signal,omitempty"`
	// Driver is the spawn driver that runs the need's children: "" means
	// DefaultDriver, the built-in exec driver; any other name is an
	// external driver a master finds in its plugins directory
	// (docs/drivers.md). DriverOpts are "K=V" options passed to the driver
	// as they are, in order (a key may repeat, as bind=/a bind=/b).
	Driver     string   `json:"driver,omitempty"`
	DriverOpts []string `json:"driver_opts,omitempty"`
	// Limits caps the memory, CPU and processes of each child (see
	// docs/drivers.md); nil means none.
	Limits *Limits `json:"limits,omitempty"`
	// Created is when the need was first declared.
	Created time.Time `json:"created"`
}

// Limits on what a need may hold.
const (
	MaxInstances   = 1000
	MaxCommandArgs = 256
	MaxArgLen      = 4096
	MaxEnv         = 256
	MaxEnvLen      = 4096
	MaxDriverOpts  = 64
)

// DefaultDriver is the built-in driver, which needs without Driver use.
const DefaultDriver = "exec"

// DriverName is n's driver: Driver, else DefaultDriver.
func (n *Need) DriverName() string {
	if n.Driver == "" {
		return DefaultDriver
	}
	return n.Driver
}

var (
	labelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// optKeyRE is a driver option's key: bwrap's are bind, ro-bind, tmpfs.
	optKeyRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
	groupRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// ValidateName reports whether s is a valid need or master name (a DNS label).
func ValidateName(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Msg: "must not be empty"}
	}
	if !labelRE.MatchString(s) {
		return &FieldError{Field: field, Msg: fmt.Sprintf("%q is not a DNS label (1-63 of a-z, 0-9 and '-', not starting or ending with '-')", s)}
	}
	return nil
}

// Validate checks every field of n and returns the first problem found as a
// *FieldError naming the field.
func (n *Need) Validate() error {
	if err := ValidateName("name", n.Name); err != nil {
		return err
	}
	if len(n.Command) == 0 || strings.TrimSpace(n.Command[0]) == "" {
		return &FieldError{Field: "command", Msg: "must not be empty"}
	}
	if len(n.Command) > MaxCommandArgs {
		return &FieldError{Field: "command", Msg: fmt.Sprintf("has %d arguments, more than %d", len(n.Command), MaxCommandArgs)}
	}
	for i, a := range n.Command {
		if len(a) > MaxArgLen {
			return &FieldError{Field: fmt.Sprintf("command[%d]", i), Msg: fmt.Sprintf("longer than %d bytes", MaxArgLen)}
		}
		if strings.ContainsRune(a, 0) {
			return &FieldError{Field: fmt.Sprintf("command[%d]", i), Msg: "contains a NUL byte"}
		}
	}
	if err := ValidateInstances(n.Instances); err != nil {
		return err
	}
	seen := map[Protocol]bool{}
	for i, p := range n.Protocols {
		if err := p.Validate(); err != nil {
			return &FieldError{Field: fmt.Sprintf("protocols[%d]", i), Msg: err.Error()}
		}
		if seen[p] {
			return &FieldError{Field: fmt.Sprintf("protocols[%d]", i), Msg: fmt.Sprintf("%q is listed twice", p)}
		}
		seen[p] = true
	}
	if len(n.Env) > MaxEnv {
		return &FieldError{Field: "env", Msg: fmt.Sprintf("has %d entries, more than %d", len(n.Env), MaxEnv)}
	}
	for k, v := range n.Env {
		if !envKeyRE.MatchString(k) {
			return &FieldError{Field: "env", Msg: fmt.Sprintf("%q is not a valid variable name", k)}
		}
		if strings.HasPrefix(k, "BERTH_") || k == "PORT" || strings.HasPrefix(k, "LISTEN_") {
			return &FieldError{Field: "env", Msg: fmt.Sprintf("%q is set by berth and cannot be overridden", k)}
		}
		if len(v) > MaxEnvLen || strings.ContainsRune(v, 0) {
			return &FieldError{Field: "env." + k, Msg: fmt.Sprintf("value is longer than %d bytes or contains a NUL byte", MaxEnvLen)}
		}
	}
	if n.Machine != "" {
		if err := ValidateName("machine", n.Machine); err != nil {
			return err
		}
	}
	if err := n.Restart.Validate(); err != nil {
		return err
	}
	if n.SocketActivation && len(n.Protocols) == 0 {
		return &FieldError{Field: "socket_activation", Msg: "needs at least one protocol to bind"}
	}
	if err := n.Limits.Validate(); err != nil {
		return err
	}
	if err := n.validateMesh(); err != nil {
		return err
	}
	if err := n.validateDriver(); err != nil {
		return err
	}
	if n.IPCGroup != "" && !groupRE.MatchString(n.IPCGroup) {
		return &FieldError{Field: "ipc_group", Msg: fmt.Sprintf("%q: want 1-64 of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit", n.IPCGroup)}
	}
	return nil
}

// validateDriver checks Driver and DriverOpts.
func (n *Need) validateDriver() error {
	if n.Driver != "" {
		if err := ValidateName("driver", n.Driver); err != nil {
			return err
		}
	}
	if len(n.DriverOpts) > MaxDriverOpts {
		return &FieldError{Field: "driver_opts", Msg: fmt.Sprintf("has %d entries, more than %d", len(n.DriverOpts), MaxDriverOpts)}
	}
	for i, o := range n.DriverOpts {
		k, _, ok := strings.Cut(o, "=")
		field := fmt.Sprintf("driver_opts[%d]", i)
		switch {
		case !ok || !optKeyRE.MatchString(k):
			return &FieldError{Field: field, Msg: fmt.Sprintf("%q is not KEY=VALUE with a KEY of 1-64 of A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter, digit or '_'", o)}
		case len(o) > MaxEnvLen || strings.ContainsRune(o, 0):
			return &FieldError{Field: field, Msg: fmt.Sprintf("longer than %d bytes or contains a NUL byte", MaxEnvLen)}
		}
	}
	return nil
}

// Group is the IPC hub group of n's children: IPCGroup, else the name.
func (n *Need) Group() string {
	if n.IPCGroup != "" {
		return n.IPCGroup
	}
	return n.Name
}

// ValidateInstances checks a desired instance count.
func ValidateInstances(n int) error {
	if n < 0 {
		return &FieldError{Field: "instances", Msg: fmt.Sprintf("must be >= 0, got %d", n)}
	}
	if n > MaxInstances {
		return &FieldError{Field: "instances", Msg: fmt.Sprintf("must be <= %d, got %d", MaxInstances, n)}
	}
	return nil
}

// Clone returns a deep copy of n.
func (n *Need) Clone() *Need {
	c := *n
	c.Command = slices.Clone(n.Command)
	c.Protocols = slices.Clone(n.Protocols)
	c.Ingress = slices.Clone(n.Ingress)
	c.Upstreams = slices.Clone(n.Upstreams)
	c.DriverOpts = slices.Clone(n.DriverOpts)
	if n.Restart != nil {
		r := *n.Restart
		c.Restart = &r
	}
	if n.Limits != nil {
		l := *n.Limits
		c.Limits = &l
	}
	if n.Env != nil {
		c.Env = make(map[string]string, len(n.Env))
		for k, v := range n.Env {
			c.Env[k] = v
		}
	}
	return &c
}

// ParseEnv turns "K=V" strings into a map, naming the first bad entry.
func ParseEnv(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &FieldError{Field: "env", Msg: fmt.Sprintf("%q is not K=V", kv)}
		}
		m[k] = v
	}
	return m, nil
}
