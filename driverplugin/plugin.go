package driverplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/driverplugin/driverpb"
	"berth/spawn"
)

// Config says how the master runs one driver binary.
type Config struct {
	// Name is the driver's name (the binary is berth-driver-<Name>); the
	// driver's fingerprint must say the same.
	Name string
	// Path is the binary.
	Path   string
	Logger *slog.Logger
	// Reattach, if set, is the state of a driver process a previous run
	// of the master left running: Open re-attaches to it, and launches a
	// new one only if that fails.
	Reattach *ReattachState
	// OnConnect is called, from the Plugin's goroutine, each time a driver
	// process is connected (launched or re-attached), with the state to
	// persist for the next run of the master.
	OnConnect func(*ReattachState)
	// PingInterval is how often the driver is pinged (its Fingerprint),
	// PingTimeout how long a ping or a short call may take before the
	// driver counts as hung and is killed and restarted. Defaults: 1 s, 5 s.
	PingInterval, PingTimeout time.Duration
	// MaxBackoff bounds the delay between restarts (default 30 s); the
	// first restart is at once, then 100 ms, doubling.
	MaxBackoff time.Duration
}

// Plugin is one external driver as the master sees it: a driver binary,
// the process running it, and the tasks it runs. It implements
// spawn.Driver. Its goroutine pings the process, and kills and restarts a
// driver process that crashed or hangs, with back-off; its tasks are then
// re-attached (Recover) and watched again, so that each is reported once.
//
// All methods are safe for concurrent use.
type Plugin struct {
	cfg  Config
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // owns the supervisor and the task watchers
	kick chan struct{}  // asks the supervisor to ping now

	mu       sync.Mutex // Protects following.
	conn     *conn      // the live driver process; nil while down
	changed  chan struct{}
	gen      uint64
	fp       Fingerprint
	lastErr  error
	tasks    map[string]*task
	closed   bool
	restarts int
	// opts are CheckOptions' answers from the live driver process, by
	// options joined with NUL; reset when another process is connected.
	opts map[string]string
}

// conn is one connected driver process.
type conn struct {
	gen      uint64
	client   *plugin.Client
	rpc      driverpb.DriverClient
	pid      int
	start    uint64
	reattach *ReattachState
}

// Open connects to the driver at cfg.Path, re-attaching to cfg.Reattach
// if it still answers, else launching the binary, and starts the
// Plugin's goroutine. A driver that cannot be started yet is not an error:
// the Plugin reports itself unavailable, with the reason, and keeps trying
// with back-off. ctx bounds the first attempt.
func Open(ctx context.Context, cfg Config) *Plugin {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 5 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	p := &Plugin{cfg: cfg, log: cfg.Logger.With("driver", cfg.Name), kick: make(chan struct{}, 1),
		changed: make(chan struct{}), tasks: map[string]*task{}}
	p.ctx, p.stop = context.WithCancel(context.Background())
	var c *conn
	var err error
	if cfg.Reattach != nil {
		if c, err = p.reattach(ctx, cfg.Reattach); err != nil {
			p.log.Warn("cannot re-attach to the driver process of the previous run; launching a new one", "pid", cfg.Reattach.PID, "err", err)
		} else {
			p.log.Info("re-attached to driver process", "pid", c.pid)
		}
	}
	if c == nil {
		if c, err = p.launch(ctx); err != nil {
			p.log.Error("start driver", "err", err)
		}
	}
	p.mu.Lock()
	if c != nil {
		p.upLocked(c)
	} else {
		p.lastErr = err
	}
	p.mu.Unlock()
	if c != nil && cfg.OnConnect != nil {
		cfg.OnConnect(c.reattach)
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.supervise() }()
	return p
}

// Name is the driver's name, as needs give it to --driver.
func (p *Plugin) Name() string { return p.cfg.Name }

// Fingerprint is what the driver last said about itself; while its
// process is down, Available is false and Reason says why.
func (p *Plugin) Fingerprint() Fingerprint {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		fp := p.fp
		fp.Name, fp.Available = p.cfg.Name, false
		fp.Reason = "driver process not running"
		if p.lastErr != nil {
			fp.Reason += ": " + p.lastErr.Error()
		}
		return fp
	}
	return p.fp
}

// maxOptionAnswers bounds the CheckOptions answers a Plugin keeps.
const maxOptionAnswers = 1024

// CheckOptions asks the driver whether it can take a need's driver
// options (see OptionsChecker) and returns its reason if not. Answers are
// kept while the driver process lives, so a bid asks once per options. It
// returns nil where the driver cannot say: it is down, does not answer in
// time (PingTimeout), or predates CheckOptions; Start then decides.
func (p *Plugin) CheckOptions(ctx context.Context, opts []string) error {
	key := strings.Join(opts, "\x00")
	p.mu.Lock()
	c := p.conn
	why, known := p.opts[key]
	p.mu.Unlock()
	if !known {
		if c == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, p.callTimeout())
		defer cancel()
		r, err := c.rpc.CheckOptions(ctx, &driverpb.CheckOptionsRequest{Options: opts})
		switch {
		case status.Code(err) == codes.Unimplemented:
			why = ""
		case err != nil:
			p.log.Warn("check driver options", "err", err)
			return nil
		default:
			why = r.Error
		}
		p.mu.Lock()
		if p.conn == c {
			if p.opts == nil || len(p.opts) >= maxOptionAnswers {
				p.opts = map[string]string{}
			}
			p.opts[key] = why
		}
		p.mu.Unlock()
	}
	if why != "" {
		return errors.New(why)
	}
	return nil
}

// PID is the driver process's pid; 0 while it is down.
func (p *Plugin) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return 0
	}
	return p.conn.pid
}

// Restarts counts the driver processes started after the first.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Handle returns the handle of a running task, to persist.
func (p *Plugin) Handle(id string) (Handle, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tasks[id]
	if !ok {
		return Handle{}, false
	}
	return t.h, true
}

// upLocked publishes c as the live connection.
func (p *Plugin) upLocked(c *conn) {
	p.gen++
	c.gen = p.gen
	p.conn, p.lastErr, p.opts = c, nil, nil
	p.broadcastLocked()
}

func (p *Plugin) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitConn returns the live connection once there is one whose generation
// is not notGen (0: any); ErrClosed once the Plugin is closed or detached.
func (p *Plugin) waitConn(ctx context.Context, notGen uint64) (*conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		c, ch := p.conn, p.changed
		p.mu.Unlock()
		if c != nil && c.gen != notGen {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if c != nil {
				return nil, fmt.Errorf("driver %s: %w: %w", p.cfg.Name, ErrDriverDown, ctx.Err())
			}
			return nil, fmt.Errorf("driver %s: %w (%w)", p.cfg.Name, ErrDriverDown, ctx.Err())
		case <-p.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// poke asks the supervisor to check the driver now.
func (p *Plugin) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// supervise pings the live driver process; one that fails a ping (crashed,
// or hung past PingTimeout) is killed, and a new one is launched with
// back-off until one answers.
func (p *Plugin) supervise() {
	t := time.NewTicker(p.cfg.PingInterval)
	defer t.Stop()
	delay := time.Duration(0)
	var upSince time.Time
	for {
		p.mu.Lock()
		c := p.conn
		p.mu.Unlock()
		if c == nil {
			if delay > 0 {
				select {
				case <-p.ctx.Done():
					return
				case <-time.After(delay):
				}
			}
			nc, err := p.launch(p.ctx)
			if p.ctx.Err() != nil {
				if nc != nil {
					p.kill(nc)
				}
				return
			}
			if err != nil {
				delay = min(max(2*delay, 100*time.Millisecond), p.cfg.MaxBackoff)
				p.log.Error("restart driver", "err", err, "retry_in", delay)
				p.mu.Lock()
				p.lastErr = err
				p.mu.Unlock()
				continue
			}
			p.mu.Lock()
			p.restarts++
			p.upLocked(nc)
			p.mu.Unlock()
			p.log.Info("driver restarted", "pid", nc.pid)
			if p.cfg.OnConnect != nil {
				p.cfg.OnConnect(nc.reattach)
			}
			upSince = time.Now()
			continue
		}
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		err := p.ping(c)
		if err == nil {
			continue
		}
		if p.ctx.Err() != nil {
			return
		}
		p.log.Error("driver not answering; killing and restarting it", "pid", c.pid, "err", err)
		p.mu.Lock()
		p.conn, p.lastErr = nil, err
		p.broadcastLocked()
		p.mu.Unlock()
		p.kill(c)
		if time.Since(upSince) > time.Minute {
			delay = 0
		}
	}
}

// ping asks the driver for its fingerprint under PingTimeout and keeps it.
func (p *Plugin) ping(c *conn) error {
	if c.client.Exited() {
		return errors.New("driver process exited")
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.PingTimeout)
	defer cancel()
	fp, err := fingerprint(ctx, p.cfg.Name, c.rpc)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.fp = fp
	p.mu.Unlock()
	return nil
}

func fingerprint(ctx context.Context, name string, rpc driverpb.DriverClient) (Fingerprint, error) {
	r, err := rpc.Fingerprint(ctx, &driverpb.FingerprintRequest{})
	if err != nil {
		return Fingerprint{}, errorOf(name, err)
	}
	fp := Fingerprint{Name: r.Name, Version: r.Version, Available: r.Available, Reason: r.Reason,
		Signals: r.Signals, ResourceLimits: r.ResourceLimits, SocketActivation: r.SocketActivation}
	if fp.Name != name {
		return fp, fmt.Errorf("driver binary berth-driver-%s says its name is %q", name, fp.Name)
	}
	return fp, nil
}

// launch starts the driver binary and connects to it.
func (p *Plugin) launch(ctx context.Context) (*conn, error) {
	cmd := exec.Command(p.cfg.Path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not in the master's terminal's group
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{pluginName: &grpcPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           newSlogAdapter(p.log),
		StartTimeout:     p.cfg.PingTimeout * 2,
	}
	client := plugin.NewClient(cfg)
	if _, err := client.Start(); err != nil {
		client.Kill()
		if strings.Contains(err.Error(), "incompatible API version") {
			return nil, fmt.Errorf("driver %s (%s): %w: %v; this master speaks driver protocol version %d: use a driver built for it",
				p.cfg.Name, p.cfg.Path, ErrProtocolVersion, err, ProtocolVersion)
		}
		return nil, fmt.Errorf("driver %s: start %s: %w", p.cfg.Name, p.cfg.Path, err)
	}
	var capture tlsCapture
	if cfg.TLSConfig != nil {
		capture.hook(cfg.TLSConfig) // before the first dial, in Client
	}
	c, err := p.connect(ctx, client)
	if err != nil {
		client.Kill()
		return nil, err
	}
	rc := client.ReattachConfig()
	st := &ReattachState{PID: c.pid, StartTime: c.start, ProtocolVersion: client.NegotiatedVersion()}
	if rc != nil && rc.Addr != nil {
		st.Network, st.Addr = rc.Addr.Network(), rc.Addr.String()
	}
	if err := capture.fill(st, cfg.TLSConfig); err != nil {
		p.log.Warn("driver cannot be re-attached after a master restart", "err", err)
		st = nil
	}
	c.reattach = st
	return c, nil
}

// reattach connects to a driver process a previous master left running.
func (p *Plugin) reattach(ctx context.Context, st *ReattachState) (*conn, error) {
	if st.ProtocolVersion != ProtocolVersion {
		return nil, fmt.Errorf("%w: it speaks version %d", ErrProtocolVersion, st.ProtocolVersion)
	}
	if t, err := spawn.ProcStartTime(st.PID); err != nil || t != st.StartTime {
		return nil, fmt.Errorf("driver process %d is gone", st.PID)
	}
	tlsCfg, err := st.tlsConfig()
	if err != nil {
		return nil, err
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{pluginName: &grpcPlugin{}},
		Reattach:         &plugin.ReattachConfig{Protocol: plugin.ProtocolGRPC, ProtocolVersion: st.ProtocolVersion, Addr: netAddr{st.Network, st.Addr}, Pid: st.PID},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		TLSConfig:        tlsCfg,
		Logger:           newSlogAdapter(p.log),
	})
	c, err := p.connect(ctx, client)
	if err != nil {
		// It is ours (pid and start time match) but cannot be talked to:
		// end it, so that only the new driver process manages the tasks.
		p.kill(&conn{client: client, pid: st.PID, start: st.StartTime})
		return nil, err
	}
	c.reattach = st
	return c, nil
}

// connect dispenses the driver's client and checks its fingerprint.
func (p *Plugin) connect(ctx context.Context, client *plugin.Client) (*conn, error) {
	rpcClient, err := client.Client()
	if err != nil {
		return nil, fmt.Errorf("driver %s: connect: %w", p.cfg.Name, err)
	}
	raw, err := rpcClient.Dispense(pluginName)
	if err != nil {
		return nil, fmt.Errorf("driver %s: %w", p.cfg.Name, err)
	}
	rpc, ok := raw.(driverpb.DriverClient)
	if !ok {
		return nil, fmt.Errorf("driver %s: unexpected client %T", p.cfg.Name, raw)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PingTimeout)
	defer cancel()
	fp, err := fingerprint(ctx, p.cfg.Name, rpc)
	if err != nil {
		return nil, err
	}
	c := &conn{client: client, rpc: rpc}
	if rc := client.ReattachConfig(); rc != nil {
		c.pid = rc.Pid
	}
	c.start, _ = spawn.ProcStartTime(c.pid)
	p.mu.Lock()
	p.fp = fp
	p.mu.Unlock()
	return c, nil
}

// kill ends a driver process: SIGKILL first (a stopped or hung process
// answers nothing, not even go-plugin's graceful shutdown), if the pid is
// still the one connected, then go-plugin's cleanup.
func (p *Plugin) kill(c *conn) {
	if c.pid > 0 {
		if t, err := spawn.ProcStartTime(c.pid); err == nil && t == c.start {
			syscall.Kill(c.pid, syscall.SIGKILL)
		}
	}
	c.client.Kill()
}

// Detach stops watching the driver and its tasks but leaves the driver
// process and its tasks running, for the next master to re-attach to.
// Idempotent.
func (p *Plugin) Detach() {
	p.mu.Lock()
	p.closed = true
	p.broadcastLocked()
	p.mu.Unlock()
	p.stop()
	p.wg.Wait()
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c != nil {
		// Close the connection without go-plugin's Close, which would ask
		// the driver to exit. go-plugin's own goroutines (process waiter,
		// stderr reader) end when the driver process does.
		if rc, err := c.client.Client(); err == nil {
			if g, ok := rc.(*plugin.GRPCClient); ok {
				g.Conn.Close()
			}
		}
	}
}

// Close stops watching and ends the driver process. Tasks still running
// are left to run, without a driver: stop them first. Idempotent.
func (p *Plugin) Close() error {
	p.mu.Lock()
	p.closed = true
	p.broadcastLocked()
	p.mu.Unlock()
	p.stop()
	p.wg.Wait()
	p.mu.Lock()
	c := p.conn
	p.conn = nil
	p.mu.Unlock()
	if c != nil {
		c.client.Kill()
	}
	return nil
}
