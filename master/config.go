package master

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"berth/needs"
	"berth/pipes"
	"berth/portoffice"
)

// Config is masterconfig.json. The keys follow allex's where allex had one.
type Config struct {
	// LanManagerAddress is where the lanmanager is: a host, host:port or
	// URL (http, https, ws, wss). The default port is 23552.
	LanManagerAddress string `json:"lanmanageraddress"`
	// PortRangeStart is the first port of each protocol's range.
	PortRangeStart map[needs.Protocol]int `json:"portrangestart"`
	// PortRangeSize is the number of ports in each range.
	PortRangeSize int `json:"portrangesize"`
	// RuntimeDirectory holds the master's state, sockets and child logs.
	// A relative path is relative to the config file's directory.
	RuntimeDirectory string `json:"runtimedirectory"`
	// Name is the master's stable name; default: the host name.
	Name string `json:"name,omitempty"`
	// AdvertiseAddress is the address children bind and others dial;
	// default: the local address that routes to the lanmanager.
	AdvertiseAddress string `json:"advertiseaddress,omitempty"`
	// IngressAddress is the IP the master opens the mesh's ingress ports
	// on (docs/mesh.md); default: the advertise address.
	IngressAddress string `json:"ingressaddress,omitempty"`
	// GatewayAddress, host:port, has the master serve the WebSocket
	// gateway there too (docs/gateway.md); default: off.
	GatewayAddress string `json:"gatewayaddress,omitempty"`
	// Token is the lanmanager's bearer token, if it has one.
	Token string `json:"token,omitempty"`
	// LanManagerPortCorrection is added to the lanmanager's port (allex).
	LanManagerPortCorrection int `json:"lanmanagerportcorrection,omitempty"`
	// LogMaxBytes is the size at which a child's log file is rotated
	// (default 10 MiB; 0 in the file means the default).
	LogMaxBytes int64 `json:"logmaxbytes,omitempty"`
	// LogKeep is how many rotated files are kept per instance (default 3),
	// so an instance uses at most about (LogKeep+1) × LogMaxBytes of disk.
	LogKeep int `json:"logkeep,omitempty"`
	// StopAfterDisconnect is how long a master that cannot reach the
	// lanmanager keeps its children before it stops them, as a duration
	// string ("30s", "5m"); "" means never (the default).
	StopAfterDisconnect string `json:"stopafterdisconnect,omitempty"`
	// RepairInterval is how often the lease repair sweep runs, as a duration
	// string; "" means DefaultRepairInterval, and MinRepairInterval is the
	// least accepted.
	RepairInterval string `json:"repairinterval,omitempty"`
	// Tracking is how children are tracked: "auto" (the default, also
	// ""): a cgroup per child where a cgroup v2 hierarchy is writable,
	// else process groups; "cgroup" (refuse to start without); or
	// "processgroup".
	Tracking string `json:"tracking,omitempty"`
	// PluginsDirectory holds the external spawn drivers, one binary each
	// named berth-driver-<name> (docs/drivers.md); default
	// <runtimedirectory>/plugins. A relative path is relative to the
	// config file's directory. A missing directory means no external
	// drivers.
	PluginsDirectory string `json:"pluginsdirectory,omitempty"`
}

// PluginsDir is PluginsDirectory with its default filled in.
func (c Config) PluginsDir() string {
	if c.PluginsDirectory == "" {
		return filepath.Join(c.RuntimeDirectory, "plugins")
	}
	return c.PluginsDirectory
}

// Repair sweep defaults and bounds.
const (
	DefaultRepairInterval = 30 * time.Second
	MinRepairInterval     = time.Second
)

// DisconnectLimit is StopAfterDisconnect parsed; 0 means never. It assumes
// a config that passed Validate.
func (c Config) DisconnectLimit() time.Duration {
	d, _ := time.ParseDuration(c.StopAfterDisconnect)
	return d
}

// RepairPeriod is RepairInterval parsed, with the default filled in. It
// assumes a config that passed Validate.
func (c Config) RepairPeriod() time.Duration {
	d, err := time.ParseDuration(c.RepairInterval)
	if err != nil || d < MinRepairInterval {
		return DefaultRepairInterval
	}
	return d
}

// parseDurationKey parses the duration string of config key field; "" is
// allowed and gives 0.
func parseDurationKey(field, s, empty string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &needs.FieldError{Field: field, Msg: fmt.Sprintf("%q is not a duration such as \"30s\" or \"5m\" (\"\" means %s)", s, empty)}
	}
	return d, nil
}

// Log rotation defaults and bounds.
const (
	DefaultLogMaxBytes = 10 << 20
	DefaultLogKeep     = 3
	MinLogMaxBytes     = 4 << 10
	MaxLogKeep         = 100
)

// logLimits returns the rotation size and count with defaults filled in.
func (c Config) logLimits() (int64, int) {
	size, keep := c.LogMaxBytes, c.LogKeep
	if size == 0 {
		size = DefaultLogMaxBytes
	}
	if keep == 0 {
		keep = DefaultLogKeep
	}
	return size, keep
}

// DefaultConfig returns the configuration written when none exists.
func DefaultConfig() Config {
	return Config{
		LanManagerAddress: "127.0.0.1",
		PortRangeStart:    map[needs.Protocol]int{needs.TCP: 15000, needs.HTTP: 16000, needs.WS: 17000},
		PortRangeSize:     1000,
		RuntimeDirectory:  ".berth",
	}
}

// DefaultLanManagerPort is the port used when the address names none.
const DefaultLanManagerPort = "23552"

// LoadConfig reads path. A missing file is an error (wrapping
// fs.ErrNotExist) and nothing is written: see LoadOrCreateConfig. Unknown
// keys and wrong types are errors naming the key. Relative runtime
// directories are made absolute against the file's directory.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("config %s: %w (master run writes one with the defaults; --config names another)", path, err)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return parseConfigFile(path, b)
}

// CheckTokenFile refuses the config at path if it holds the API token
// where another local user could read it (whoever has the token can run
// commands on every master) or change it: it must be readable and
// writable by its owner only, and its owner must be this user or root
// (as OpenSSH wants of a private key). `master run` checks; `master ps`
// and `master drivers`, which do not send the token, do not.
func CheckTokenFile(path string, cfg Config) error {
	if cfg.Token == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("config %s holds the API token and other users may read it (mode %04o): chmod 600 %s, or leave \"token\" out and give it with --token-file or BERTH_TOKEN", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("config %s holds the API token and belongs to user %d, neither this user (%d) nor root: that user could change it", path, st.Uid, os.Geteuid())
	}
	return nil
}

// LoadOrCreateConfig is LoadConfig, except that a missing file is first
// written with the defaults (mode 0600), as allex did; created says so.
func LoadOrCreateConfig(path string) (cfg Config, created bool, err error) {
	cfg, err = LoadConfig(path)
	if !errors.Is(err, os.ErrNotExist) {
		return cfg, false, err
	}
	out, _ := json.MarshalIndent(DefaultConfig(), "", "  ")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Config{}, false, fmt.Errorf("create default config %s: %w", path, err)
	}
	_, err = f.Write(append(out, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("create default config %s: %w", path, err)
	}
	cfg, err = parseConfigFile(path, out)
	return cfg, err == nil, err
}

func parseConfigFile(path string, b []byte) (Config, error) {
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if !filepath.IsAbs(cfg.RuntimeDirectory) {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(path), cfg.RuntimeDirectory))
		if err != nil {
			return Config{}, err
		}
		cfg.RuntimeDirectory = abs
	}
	if cfg.PluginsDirectory != "" && !filepath.IsAbs(cfg.PluginsDirectory) {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(path), cfg.PluginsDirectory))
		if err != nil {
			return Config{}, err
		}
		cfg.PluginsDirectory = abs
	}
	return cfg, nil
}

// ParseConfig decodes and validates a config; keys left out keep their
// defaults.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	defaults := cfg.PortRangeStart
	cfg.PortRangeStart = nil // a portrangestart in the file replaces the default ranges whole
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, describeConfigError(err)
	}
	if cfg.PortRangeStart == nil {
		var keys map[string]json.RawMessage
		json.Unmarshal(b, &keys)
		for k := range keys {
			if strings.EqualFold(k, "portrangestart") { // encoding/json matches keys without case
				return Config{}, &needs.FieldError{Field: "portrangestart", Msg: "must name at least one protocol"}
			}
		}
		cfg.PortRangeStart = defaults
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("trailing data after the JSON object")
	}
	return cfg, cfg.Validate()
}

func describeConfigError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("key %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown key %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.EOF):
		return errors.New("empty file, want a JSON object")
	}
	return err
}

// Ranges converts the config's ranges for the port office.
func (c Config) Ranges() map[needs.Protocol]portoffice.Range {
	r := map[needs.Protocol]portoffice.Range{}
	for p, start := range c.PortRangeStart {
		r[p] = portoffice.Range{Start: start, Size: c.PortRangeSize}
	}
	return r
}

// Validate checks every key.
func (c Config) Validate() error {
	if _, err := c.LinkURL(); err != nil {
		return &needs.FieldError{Field: "lanmanageraddress", Msg: err.Error()}
	}
	if c.PortRangeSize < 1 || c.PortRangeSize > 65535 {
		return &needs.FieldError{Field: "portrangesize", Msg: fmt.Sprintf("must be 1-65535, got %d", c.PortRangeSize)}
	}
	for p := range c.PortRangeStart {
		if err := p.Validate(); err != nil {
			return &needs.FieldError{Field: "portrangestart", Msg: err.Error()}
		}
	}
	if err := portoffice.ValidateRanges(c.Ranges()); err != nil {
		return err
	}
	if c.RuntimeDirectory == "" {
		return &needs.FieldError{Field: "runtimedirectory", Msg: "must not be empty"}
	}
	if c.Name != "" {
		if err := needs.ValidateName("name", c.Name); err != nil {
			return err
		}
	}
	if c.AdvertiseAddress != "" {
		if err := pipes.ValidateAddress("advertiseaddress", c.AdvertiseAddress); err != nil {
			return err
		}
	}
	if c.IngressAddress != "" {
		if err := pipes.ValidateAddress("ingressaddress", c.IngressAddress); err != nil {
			return err
		}
	}
	if c.GatewayAddress != "" {
		host, port, err := net.SplitHostPort(c.GatewayAddress)
		if err != nil {
			return &needs.FieldError{Field: "gatewayaddress", Msg: fmt.Sprintf("%q: want host:port (%v)", c.GatewayAddress, err)}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return &needs.FieldError{Field: "gatewayaddress", Msg: fmt.Sprintf("%q: the port must be 1-65535", c.GatewayAddress)}
		}
		if net.ParseIP(host) == nil {
			return &needs.FieldError{Field: "gatewayaddress", Msg: fmt.Sprintf("%q: the host must be an IP address", c.GatewayAddress)}
		}
	}
	if c.LogMaxBytes != 0 && c.LogMaxBytes < MinLogMaxBytes {
		return &needs.FieldError{Field: "logmaxbytes", Msg: fmt.Sprintf("must be 0 (default %d) or at least %d, got %d", DefaultLogMaxBytes, MinLogMaxBytes, c.LogMaxBytes)}
	}
	if c.LogKeep < 0 || c.LogKeep > MaxLogKeep {
		return &needs.FieldError{Field: "logkeep", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxLogKeep, c.LogKeep)}
	}
	d, err := parseDurationKey("stopafterdisconnect", c.StopAfterDisconnect, "never")
	if err != nil {
		return err
	}
	if c.StopAfterDisconnect != "" && d <= 0 {
		return &needs.FieldError{Field: "stopafterdisconnect", Msg: fmt.Sprintf("must be positive, or \"\" for never; got %q", c.StopAfterDisconnect)}
	}
	d, err = parseDurationKey("repairinterval", c.RepairInterval, "the default "+DefaultRepairInterval.String())
	if err != nil {
		return err
	}
	if c.RepairInterval != "" && d < MinRepairInterval {
		return &needs.FieldError{Field: "repairinterval", Msg: fmt.Sprintf("must be at least %s, got %q", MinRepairInterval, c.RepairInterval)}
	}
	if strings.ContainsRune(c.PluginsDirectory, 0) {
		return &needs.FieldError{Field: "pluginsdirectory", Msg: "contains a NUL byte"}
	}
	if c.PluginsDirectory != "" {
		if fi, err := os.Stat(c.PluginsDirectory); err == nil && !fi.IsDir() {
			return &needs.FieldError{Field: "pluginsdirectory", Msg: fmt.Sprintf("%q is not a directory", c.PluginsDirectory)}
		}
	}
	return validateTracking(c.Tracking)
}

// LinkURL is the WebSocket URL of the lanmanager's master link.
func (c Config) LinkURL() (string, error) {
	a := strings.TrimSpace(c.LanManagerAddress)
	if a == "" {
		return "", errors.New("must not be empty")
	}
	if !strings.Contains(a, "://") {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(strings.Trim(a, "[]"), DefaultLanManagerPort)
		}
		a = "ws://" + a
	}
	u, err := url.Parse(a)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("scheme %q: want ws, wss, http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("%q has no host", c.LanManagerAddress)
	}
	p := u.Port()
	if p == "" {
		p = DefaultLanManagerPort
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q outside 1-65535", p)
	}
	if n += c.LanManagerPortCorrection; n < 1 || n > 65535 {
		return "", fmt.Errorf("port %s plus lanmanagerportcorrection %d is outside 1-65535", p, c.LanManagerPortCorrection)
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(n))
	u.Path = "/v1/link"
	return u.String(), nil
}
