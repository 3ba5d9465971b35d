package pipes

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"berth/needs"
)

// Message types on the master ↔ lanmanager link (over WebSocket at /v1/link).
// "→L" travels from master to lanmanager, "→M" the other way.
const (
	TypeHello   = "hello"   // →L Hello: first frame; who the master is and what it runs
	TypeWelcome = "welcome" // →M Welcome: answer to hello
	TypeOffer   = "offer"   // →M Offer: an unsatisfied instance this master may bid for
	TypeBid     = "bid"     // →L Bid: yes or no to an offer
	TypeGrant   = "grant"   // →M Grant: the instance is this master's, under a new allocation
	TypeStarted = "started" // →L Started: the child runs; here are its pid, address and ports
	TypeReady   = "ready"   // →L AllocRef: the child said ready on its pipe
	TypeApprove = "approve" // →M AllocRef: every port answered; the instance is running
	TypeStop    = "stop"    // →M Stop: stop this allocation (rejected, scaled down, removed, stale)
	TypeExited  = "exited"  // →L Exited: the child is gone (exit, signal, failed start, stopped)
	TypeStats   = "stats"   // →L / child→master Stats: heartbeat figures
	TypePing    = "ping"    // either way, no body; answered by pong with the same id
	TypePong    = "pong"
	TypeError   = "error" // answer carrying Msg.Error

	TypeLogs       = "logs"        // →M Logs: stream an instance's log; answered by log.data frames with the same id
	TypeLogData    = "log.data"    // →L LogData: one chunk of a log stream; EOF or Error ends it
	TypeLogsCancel = "logs.cancel" // →M no body: end the log stream whose request had this id
)

// Message types on a child's control socket.
const (
	TypeChildHello = "child.hello" // child→master ChildHello, first frame
	TypeChildReady = "child.ready" // child→master, no body
	TypeChildStop  = "child.stop"  // master→child ChildStop: please exit within the grace
)

// Message types on the master's own socket.
const (
	TypePS      = "ps"      // request (no body) and answer ([]ChildInfo)
	TypeDrivers = "drivers" // request (no body) and answer ([]DriverInfo)
)

// Hello introduces a master.
type Hello struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Version string `json:"version,omitempty"`
	// Boot is a random nonce the master draws at each start: a copy of its
	// runtime directory shares its id, never its boot (see the lanmanager's
	// identity check).
	Boot   string                    `json:"boot,omitempty"`
	Ranges map[needs.Protocol][2]int `json:"ranges,omitempty"`
	Free   map[needs.Protocol]int    `json:"free,omitempty"`
	Allocs []Started                 `json:"allocs,omitempty"`
	// Exits are exits the master could not report while the link was down.
	Exits []Exited `json:"exits,omitempty"`
	// Services asks for the running set: a full services frame after the
	// welcome, then the changes (see Services).
	Services bool `json:"services,omitempty"`
	// Loads: the master sends the heartbeat figures of its children that
	// are balanced by resource, and takes the other masters' (TypeLoads).
	Loads bool `json:"loads,omitempty"`
	// Drivers are the master's spawn drivers (the built-in exec and its
	// external drivers) as they were when the link came up; at most
	// MaxDrivers. A master from before drivers existed sends none.
	Drivers []DriverInfo `json:"drivers,omitempty"`
}

// MaxDrivers bounds Hello.Drivers.
const MaxDrivers = 64

// DriverInfo describes one spawn driver of a master: its fingerprint, and
// for an external driver its process (docs/drivers.md).
type DriverInfo struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Builtin is true for exec, which runs inside the master.
	Builtin bool `json:"builtin,omitempty"`
	// Available is false when the driver cannot run children now; Reason
	// says why (not installed, its process crashed and is restarting, a
	// driver of another protocol version, ...).
	Available        bool   `json:"available"`
	Reason           string `json:"reason,omitempty"`
	Signals          bool   `json:"signals,omitempty"`
	ResourceLimits   bool   `json:"resource_limits,omitempty"`
	SocketActivation bool   `json:"socket_activation,omitempty"`
	// PID is the driver process's pid (0 for exec, or while it is down);
	// Restarts counts its restarts since the master started.
	PID      int `json:"pid,omitempty"`
	Restarts int `json:"restarts,omitempty"`
}

// Validate checks a driver description.
func (d *DriverInfo) Validate() error {
	if err := needs.ValidateName("name", d.Name); err != nil {
		return err
	}
	if len(d.Version) > 128 {
		return &needs.FieldError{Field: "version", Msg: "must be at most 128 bytes"}
	}
	if len(d.Reason) > 4096 {
		return &needs.FieldError{Field: "reason", Msg: "must be at most 4096 bytes"}
	}
	if d.PID < 0 || d.Restarts < 0 {
		return &needs.FieldError{Field: "pid", Msg: "must be >= 0"}
	}
	return nil
}

// Validate checks a hello.
func (h *Hello) Validate() error {
	if len(h.ID) < 8 || len(h.ID) > 64 {
		return &needs.FieldError{Field: "id", Msg: "must be 8-64 bytes"}
	}
	if err := needs.ValidateName("name", h.Name); err != nil {
		return err
	}
	if err := ValidateAddress("address", h.Address); err != nil {
		return err
	}
	if len(h.Boot) > 64 {
		return &needs.FieldError{Field: "boot", Msg: "must be at most 64 bytes"}
	}
	for i := range h.Allocs {
		if err := h.Allocs[i].Validate(); err != nil {
			return fmt.Errorf("allocs[%d]: %w", i, err)
		}
	}
	for i := range h.Exits {
		if err := h.Exits[i].Validate(); err != nil {
			return fmt.Errorf("exits[%d]: %w", i, err)
		}
	}
	if len(h.Drivers) > MaxDrivers {
		return &needs.FieldError{Field: "drivers", Msg: fmt.Sprintf("has %d entries, more than %d", len(h.Drivers), MaxDrivers)}
	}
	for i := range h.Drivers {
		if err := h.Drivers[i].Validate(); err != nil {
			return fmt.Errorf("drivers[%d]: %w", i, err)
		}
	}
	return nil
}

// Welcome answers a hello.
type Welcome struct {
	// HeartbeatMS is how often the master should ping.
	HeartbeatMS int `json:"heartbeat_ms"`
	// TTLMS is how long either side waits without hearing a frame before it
	// declares the link dead. The lanmanager re-places the instances of a
	// master it has not heard from for TTLMS; a master that has not heard
	// from the lanmanager for TTLMS drops the link and reconnects.
	TTLMS int `json:"ttl_ms,omitempty"`
	// StopGraceMS is the lanmanager's stop grace: how long a stopped
	// instance has between SIGTERM and SIGKILL. A master's ingress and
	// upstream proxies give the open connections of an instance that left
	// the running set as long to finish (0, from an older lanmanager: the
	// master's own stop grace).
	StopGraceMS int `json:"stop_grace_ms,omitempty"`
	// Loads: the lanmanager passes loads frames on between masters, so a
	// master may send them (an older lanmanager would refuse the type).
	Loads bool `json:"loads,omitempty"`
}

// MaxLinkMS bounds heartbeat_ms and ttl_ms: 24 h.
const MaxLinkMS = 24 * 60 * 60 * 1000

// Validate checks a welcome.
func (w *Welcome) Validate() error {
	if w.HeartbeatMS < 0 || w.HeartbeatMS > MaxLinkMS {
		return &needs.FieldError{Field: "heartbeat_ms", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxLinkMS, w.HeartbeatMS)}
	}
	if w.TTLMS < 0 || w.TTLMS > MaxLinkMS {
		return &needs.FieldError{Field: "ttl_ms", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxLinkMS, w.TTLMS)}
	}
	if w.StopGraceMS < 0 || w.StopGraceMS > MaxGraceMS {
		return &needs.FieldError{Field: "stop_grace_ms", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxGraceMS, w.StopGraceMS)}
	}
	if w.TTLMS > 0 && w.HeartbeatMS >= w.TTLMS {
		return &needs.FieldError{Field: "ttl_ms", Msg: fmt.Sprintf("must be greater than heartbeat_ms %d, got %d", w.HeartbeatMS, w.TTLMS)}
	}
	return nil
}

// Offer proposes an unsatisfied instance to a master.
type Offer struct {
	Instance string     `json:"instance"`
	Round    uint64     `json:"round"`
	Need     needs.Need `json:"need"`
}

// Validate checks an offer.
func (o *Offer) Validate() error {
	if _, _, err := needs.ParseInstanceName(o.Instance); err != nil {
		return err
	}
	return o.Need.Validate()
}

// Bid answers an offer.
type Bid struct {
	Instance string `json:"instance"`
	Round    uint64 `json:"round"`
	OK       bool   `json:"ok"`
	// Reason says why not, when !OK (e.g. "http range 16000-16999 exhausted").
	Reason string `json:"reason,omitempty"`
}

// Validate checks a bid.
func (b *Bid) Validate() error {
	_, _, err := needs.ParseInstanceName(b.Instance)
	return err
}

// Grant hands an instance to a master under a new allocation id.
type Grant struct {
	Instance string     `json:"instance"`
	Alloc    string     `json:"alloc"`
	Need     needs.Need `json:"need"`
	// Env is what the lanmanager adds to the child's environment, after
	// the need's and the master's: BERTH_ variables only (the IPC hub's
	// BERTH_IPC*).
	Env map[string]string `json:"env,omitempty"`
}

// MaxGrantEnv bounds Grant.Env.
const MaxGrantEnv = 32

var grantEnvRE = regexp.MustCompile(`^BERTH_[A-Z0-9_]+$`)

// Validate checks a grant.
func (g *Grant) Validate() error {
	if _, _, err := needs.ParseInstanceName(g.Instance); err != nil {
		return err
	}
	if err := ValidateAlloc(g.Alloc); err != nil {
		return err
	}
	if len(g.Env) > MaxGrantEnv {
		return &needs.FieldError{Field: "env", Msg: fmt.Sprintf("has %d entries, more than %d", len(g.Env), MaxGrantEnv)}
	}
	for k, v := range g.Env {
		if !grantEnvRE.MatchString(k) {
			return &needs.FieldError{Field: "env", Msg: fmt.Sprintf("%q: a grant may set only BERTH_ variables (A-Z, 0-9, _)", k)}
		}
		if len(v) > needs.MaxEnvLen || strings.ContainsRune(v, 0) {
			return &needs.FieldError{Field: "env." + k, Msg: fmt.Sprintf("value is longer than %d bytes or contains a NUL byte", needs.MaxEnvLen)}
		}
	}
	return g.Need.Validate()
}

// Started reports a spawned child.
type Started struct {
	Alloc     string                 `json:"alloc"`
	Instance  string                 `json:"instance"`
	PID       int                    `json:"pid"`
	Address   string                 `json:"address"`
	Ports     map[needs.Protocol]int `json:"ports,omitempty"`
	StartedAt time.Time              `json:"started_at"`
	Ready     bool                   `json:"ready,omitempty"`
	// Adopted is true when a restarted master re-adopted the child rather
	// than spawning it.
	Adopted bool `json:"adopted,omitempty"`
}

// Validate checks a started report.
func (s *Started) Validate() error {
	if err := ValidateAlloc(s.Alloc); err != nil {
		return err
	}
	if _, _, err := needs.ParseInstanceName(s.Instance); err != nil {
		return err
	}
	if s.PID <= 0 {
		return &needs.FieldError{Field: "pid", Msg: fmt.Sprintf("must be > 0, got %d", s.PID)}
	}
	if s.Address != "" {
		if err := validateHost("address", s.Address); err != nil {
			return err
		}
	}
	return validatePorts(s.Ports)
}

// AllocRef names an allocation.
type AllocRef struct {
	Alloc string `json:"alloc"`
}

// Validate checks the reference.
func (a *AllocRef) Validate() error { return ValidateAlloc(a.Alloc) }

// Stop asks a master to stop an allocation.
type Stop struct {
	Alloc  string `json:"alloc"`
	Reason string `json:"reason,omitempty"`
	// GraceMS is the time between SIGTERM and SIGKILL, at most MaxGraceMS;
	// 0 means the master's default.
	GraceMS int `json:"grace_ms,omitempty"`
}

// MaxGraceMS bounds a stop's grace_ms: 24 h. A larger value would overflow
// a time.Duration in milliseconds long before it made sense.
const MaxGraceMS = 24 * 60 * 60 * 1000

// Validate checks a stop.
func (s *Stop) Validate() error {
	if err := validateGrace(s.GraceMS); err != nil {
		return err
	}
	return ValidateAlloc(s.Alloc)
}

func validateGrace(ms int) error {
	if ms < 0 || ms > MaxGraceMS {
		return &needs.FieldError{Field: "grace_ms", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxGraceMS, ms)}
	}
	return nil
}

// Exited reports that an allocation's child is gone.
type Exited struct {
	Alloc string `json:"alloc"`
	// Instance is empty when the master no longer knows the allocation.
	Instance string `json:"instance,omitempty"`
	// Code is the exit code, -1 when killed by a signal or never started.
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
	// Reason explains a child that never ran (lease or spawn failure) or
	// that was stopped on request.
	Reason string `json:"reason,omitempty"`
	// Requested is true when the master stopped it because it was asked to.
	Requested bool `json:"requested,omitempty"`
	// OOMKilled is true when the kernel's OOM killer killed a process of
	// the child (its leader, or on a cgroup v1 machine maybe another one);
	// MemoryLimit is then the need's memory limit, if it has one.
	OOMKilled   bool           `json:"oom_killed,omitempty"`
	MemoryLimit needs.ByteSize `json:"memory_limit,omitempty"`
}

// Validate checks an exit report.
func (e *Exited) Validate() error {
	if err := ValidateAlloc(e.Alloc); err != nil {
		return err
	}
	if e.Instance == "" {
		return nil
	}
	_, _, err := needs.ParseInstanceName(e.Instance)
	return err
}

// MaxLogChunk is the largest Data of one log.data frame.
const MaxLogChunk = 64 << 10

// MaxLogTail is the largest number of lines a logs request may ask for.
const MaxLogTail = 100000

// Logs asks a master for an instance's log file (stdout and stderr).
type Logs struct {
	Instance string `json:"instance"`
	// Alloc, when set, must be the allocation the master runs the instance
	// under; empty reads whatever log the master keeps for the instance.
	Alloc string `json:"alloc,omitempty"`
	// Tail is how many lines from the end to send first; 0 sends the whole
	// current file.
	Tail int `json:"tail,omitempty"`
	// Follow keeps the stream open and sends what is written next,
	// following the file across rotations, until logs.cancel.
	Follow bool `json:"follow,omitempty"`
}

// Validate checks a logs request.
func (l *Logs) Validate() error {
	if _, _, err := needs.ParseInstanceName(l.Instance); err != nil {
		return err
	}
	if l.Alloc != "" {
		if err := ValidateAlloc(l.Alloc); err != nil {
			return err
		}
	}
	if l.Tail < 0 || l.Tail > MaxLogTail {
		return &needs.FieldError{Field: "tail", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxLogTail, l.Tail)}
	}
	return nil
}

// LogData is one chunk of a log stream. Data travels base64-encoded in JSON.
type LogData struct {
	Data []byte `json:"data,omitempty"`
	// EOF ends the stream (a stream that does not follow, or a child gone).
	EOF bool `json:"eof,omitempty"`
	// Error ends the stream with a failure (no such instance, unreadable file).
	Error string `json:"error,omitempty"`
}

// Validate checks a chunk.
func (d *LogData) Validate() error {
	if len(d.Data) > MaxLogChunk {
		return &needs.FieldError{Field: "data", Msg: fmt.Sprintf("chunk of %d bytes is larger than %d", len(d.Data), MaxLogChunk)}
	}
	return nil
}

// Stats are a child's heartbeat figures.
type Stats struct {
	Alloc       string    `json:"alloc,omitempty"`
	PID         int       `json:"pid"`
	CPUPercent  float64   `json:"cpu_percent"`
	RSS         uint64    `json:"rss"`
	HeapUsed    uint64    `json:"heap_used"`
	HeapTotal   uint64    `json:"heap_total"`
	Connections int       `json:"connections"`
	SampledAt   time.Time `json:"sampled_at"`
}

// Validate checks stats.
func (s *Stats) Validate() error {
	if s.CPUPercent < 0 || s.Connections < 0 {
		return &needs.FieldError{Field: "stats", Msg: "cpu_percent and connections must be >= 0"}
	}
	return nil
}

// ChildHello is the first frame a child sends on its pipe.
type ChildHello struct {
	PID int `json:"pid"`
}

// Validate checks a child hello.
func (h *ChildHello) Validate() error {
	if h.PID <= 0 {
		return &needs.FieldError{Field: "pid", Msg: "must be > 0"}
	}
	return nil
}

// ChildStop asks a child to exit.
type ChildStop struct {
	Reason string `json:"reason,omitempty"`
	// GraceMS is at most MaxGraceMS.
	GraceMS int `json:"grace_ms"`
}

// Validate checks a child stop.
func (s *ChildStop) Validate() error { return validateGrace(s.GraceMS) }

// ChildInfo describes one child for `master ps`.
type ChildInfo struct {
	Instance  string                 `json:"instance"`
	Alloc     string                 `json:"alloc"`
	PID       int                    `json:"pid"`
	State     string                 `json:"state"`
	Ports     map[needs.Protocol]int `json:"ports,omitempty"`
	Pipe      string                 `json:"pipe"`
	Log       string                 `json:"log"`
	StartedAt time.Time              `json:"started_at"`
	Ready     bool                   `json:"ready"`
	Stats     *Stats                 `json:"stats,omitempty"`
	// Adopted is true for a child a restarted master re-adopted.
	Adopted bool `json:"adopted,omitempty"`
	// Driver is the external driver that runs the child; "" for exec.
	Driver string `json:"driver,omitempty"`
	// Tracking says how the master tracks the child's processes:
	// "cgroup <dir>" or "process group <pgid>".
	Tracking string `json:"tracking,omitempty"`
	// Upstreams are the child's upstream listeners (their targets left
	// out), with the error of one that is not open or leads nowhere.
	Upstreams []UpstreamState `json:"upstreams,omitempty"`
	// PeersFile is the child's BERTH_PEERS_FILE, if its need has peers.
	PeersFile string `json:"peers_file,omitempty"`
	// Limits are the need's limits, if any; Usage is what the child uses,
	// read from its cgroups, where it has any.
	Limits *needs.Limits `json:"limits,omitempty"`
	Usage  *Usage        `json:"usage,omitempty"`
}

// Usage is what a child uses, for `master ps`; a figure its cgroups do not
// give is -1.
type Usage struct {
	// Memory is the memory charged to the child now, in bytes.
	Memory int64 `json:"memory"`
	// CPUs is the CPU time the child used over a short window (WindowMS)
	// divided by the window: 0.5 is half of one CPU.
	CPUs     float64 `json:"cpus"`
	WindowMS int     `json:"window_ms,omitempty"`
	// PIDs is how many processes and threads it has now.
	PIDs int64 `json:"pids"`
}

// ValidateAddress checks an address others are to dial: an IP address that
// is neither unspecified (0.0.0.0, ::) nor multicast.
func ValidateAddress(field, addr string) error {
	ip := net.ParseIP(addr)
	switch {
	case ip == nil:
		return &needs.FieldError{Field: field, Msg: fmt.Sprintf("%q is not an IP address", addr)}
	case ip.IsUnspecified() || ip.IsMulticast():
		return &needs.FieldError{Field: field, Msg: fmt.Sprintf("%q cannot be dialled: give the machine's own address", addr)}
	}
	return nil
}

// MaxHostLen is the longest host name a started report may carry.
const MaxHostLen = 253

// validateHost checks a host others are to dial: an address as
// ValidateAddress wants it, or a DNS name of at most MaxHostLen bytes whose
// dot-separated labels are 1-63 bytes of [A-Za-z0-9-], neither beginning
// nor ending with '-'.
func validateHost(field, host string) error {
	if net.ParseIP(host) != nil {
		return ValidateAddress(field, host)
	}
	bad := func(why string) error {
		return &needs.FieldError{Field: field, Msg: fmt.Sprintf("%q is neither an IP address nor a host name: %s", host, why)}
	}
	if len(host) == 0 || len(host) > MaxHostLen {
		return bad(fmt.Sprintf("must be 1-%d bytes", MaxHostLen))
	}
	label := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if label == 0 || host[i-1] == '-' {
				return bad("empty label or label ending with '-'")
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return bad("label beginning with '-'")
			}
		case !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'):
			return bad(fmt.Sprintf("byte %q at %d", c, i))
		}
		if label++; label > 63 {
			return bad("label longer than 63 bytes")
		}
	}
	if host[len(host)-1] == '-' {
		return bad("label ending with '-'")
	}
	return nil
}

// ValidateAlloc checks an allocation id: 8-64 bytes of [a-z0-9-].
func ValidateAlloc(a string) error {
	if len(a) < 8 || len(a) > 64 {
		return &needs.FieldError{Field: "alloc", Msg: fmt.Sprintf("%q must be 8-64 bytes", a)}
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return &needs.FieldError{Field: "alloc", Msg: fmt.Sprintf("%q has a character outside [a-z0-9-]", a)}
		}
	}
	return nil
}
