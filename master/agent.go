package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"berth/driverplugin"
	"berth/needs"
	"berth/pipes"
	"berth/portoffice"
	"berth/spawn"
)

// Options are what a master needs besides its config file.
type Options struct {
	Config Config
	// StopGrace is the default time between SIGTERM and SIGKILL (5 s).
	StopGrace time.Duration
	// Driver spawns children; nil means the built-in exec driver.
	Driver spawn.Driver
	// Version is reported to the lanmanager.
	Version string
	Logger  *slog.Logger
	// Environ is the environment children start from, as KEY=VALUE
	// (berth's own variables, PORT and LISTEN_* are dropped from it; the
	// need's env and the child contract are added). The commands pass their
	// own environment, as PM2 does; nil gives children only DefaultPath,
	// as systemd does for its services. The package never reads the
	// environment itself.
	Environ []string
	// RuntimeCheck is how often the runtime directory is checked and
	// repaired (runtime.go); 0 means DefaultRuntimeCheck.
	RuntimeCheck time.Duration
	// DriverPingInterval and DriverPingTimeout: how often external
	// drivers are pinged, and how long one may take to answer before it
	// is killed and restarted (0: driverplugin's defaults, 1 s and 5 s).
	DriverPingInterval, DriverPingTimeout time.Duration
}

// Agent is one machine's master: it links to the lanmanager, bids for
// unsatisfied instances, leases their ports, spawns and supervises the
// children and reports them. All methods are safe for concurrent use.
type Agent struct {
	// lanGrace is the stop grace the lanmanager's last welcome gave (0:
	// none given), in nanoseconds; see meshGrace.
	lanGrace atomic.Int64

	opts    Options
	cfg     Config
	log     *slog.Logger
	id      string
	boot    string // random per start: a copy of master.id never shares it
	name    string
	addr    string
	linkURL string
	sockDir string
	logDir  string
	track   tracking // how children are tracked (track.go)

	office *portoffice.Office
	state  *stateDB
	ctl    *pipes.Listener // guarded by mu once Open returns: the runtime check replaces it (ctl.go)

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // owns the link loop, the control socket and every child's goroutines

	// linkEvents gets a token whenever the link goes up or down.
	linkEvents chan struct{}
	// mirror is the running set as the lanmanager last pushed it (mirror.go).
	mirror *Mirror
	// remote are the resource figures of other masters' children
	// (master/loads.go).
	remote remoteLoads
	// ingress opens the mesh's ingress ports (ingress.go).
	ingress *ingress
	gateway *masterGateway // nil without a gatewayaddress
	// drivers are the external drivers by name (drivers.go); set in Open,
	// never changed.
	drivers map[string]*driverplugin.Plugin

	mu       sync.Mutex // Protects following.
	children map[string]*child
	link     *outbox // the current link's outbound queue; nil while unlinked
	linked   bool
	linkUps  uint64 // how many times the link came up
	closed   bool
	unsent   []pipes.Exited // exits not yet delivered; carried by the next hello

	streams logStreams // log streams to the lanmanager (master/logs.go)
}

// ErrClosed is returned by operations on a closed Agent.
var ErrClosed = errors.New("master closed")

// Open prepares the runtime directory, the port office and the control
// socket, adopts the children a predecessor left running (see adopt.go),
// and starts the link to the lanmanager, the lease repair sweep and, if
// configured, the stop-after-disconnect timer. ctx bounds start-up only.
func Open(ctx context.Context, opts Options) (*Agent, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 5 * time.Second
	}
	if opts.Driver == nil {
		opts.Driver = spawn.Exec
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Agent{opts: opts, cfg: cfg, children: map[string]*child{}, linkEvents: make(chan struct{}, 1), mirror: NewMirror()}
	var err error
	a.linkURL, err = cfg.LinkURL()
	if err != nil {
		return nil, err
	}
	rt := cfg.RuntimeDirectory
	if err := os.MkdirAll(rt, 0o700); err != nil {
		return nil, fmt.Errorf("runtime directory: %w", err)
	}
	if a.id, err = loadID(rt); err != nil {
		return nil, err
	}
	a.boot = newBoot()
	a.name = cfg.Name
	if a.name == "" {
		a.name = hostLabel()
	}
	a.log = opts.Logger.With("master", a.name)
	if a.track, err = newTracking(cfg.Tracking, rt, a.log); err != nil {
		return nil, err
	}
	if a.addr = cfg.AdvertiseAddress; a.addr == "" {
		a.addr = routeTo(a.linkURL)
	}
	if a.sockDir, err = openSocketDir(rt, a.id); err != nil {
		return nil, err
	}
	a.logDir = filepath.Join(rt, "logs")
	for _, d := range []string{a.sockDir, a.logDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	if a.state, err = openState(filepath.Join(rt, "master.db")); err != nil {
		return nil, err
	}
	a.office, err = portoffice.Open(filepath.Join(rt, "ports.db"), portoffice.Options{
		Ranges: cfg.Ranges(), Host: a.addr, Logger: a.log,
	})
	if err != nil {
		a.state.close()
		return nil, err
	}
	a.warnEphemeral(ephemeralRangeFile)
	if a.ctl, err = pipes.Listen(filepath.Join(a.sockDir, "master.sock")); err != nil {
		a.office.Close()
		a.state.close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	a.ctx, a.cancel = context.WithCancelCause(context.Background())
	a.openDrivers(ctx)
	a.adoptChildren(ctx)
	ingressAddr := cfg.IngressAddress
	if ingressAddr == "" {
		ingressAddr = a.addr
	}
	if cfg.GatewayAddress != "" {
		a.gateway = newMasterGateway(cfg.GatewayAddress, a.mirror, a.log)
	}
	a.ingress = startIngress(ingressAddr, a.mirror, a.meshGrace, a.log,
		func(r *pipes.IngressReport) { a.send(pipes.TypeIngress, r) }, a.loadOf)
	a.wg.Add(4)
	go func() { defer a.wg.Done(); a.rotateLoop() }()
	go func() { defer a.wg.Done(); a.serveControl(a.ctl) }()
	go func() { defer a.wg.Done(); a.linkLoop() }()
	go func() { defer a.wg.Done(); a.repairLoop(cfg.RepairPeriod()) }()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.runtimeLoop(opts.RuntimeCheck) }()
	if d := cfg.DisconnectLimit(); d > 0 {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.disconnectLoop(d) }()
	}
	a.log.Info("master started", "id", a.id, "address", a.addr, "lanmanager", a.linkURL, "runtime", rt, "tracking", a.track.String(),
		"limits", a.track.limits.String())
	return a, nil
}

// ID is the master's stable id.
func (a *Agent) ID() string { return a.id }

// Name is the master's name.
func (a *Agent) Name() string { return a.name }

// Office is the master's port office.
func (a *Agent) Office() *portoffice.Office { return a.office }

// meshGrace is how long the ingress and upstream proxies give the open
// connections of an instance that left the running set: the lanmanager's
// stop grace, which is how long the instance itself has to finish, or the
// master's own (Options.StopGrace) until a lanmanager has said it.
func (a *Agent) meshGrace() time.Duration {
	if d := time.Duration(a.lanGrace.Load()); d > 0 {
		return d
	}
	return a.opts.StopGrace
}

// Close stops every child (SIGTERM to its process group, grace, SIGKILL),
// releases their ports and closes the link and the files. Idempotent; after
// Leave it does nothing.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(a, "master shutting down", a.opts.StopGrace)
			<-c.done
		}()
	}
	wg.Wait()
	a.closeDrivers(false)
	err := a.shutdown()
	a.track.remove() // no child left: the master's cgroup goes too
	return err
}

// Leave closes the link, the sockets and the files but leaves every child
// running, with its record in master.db and its ports leased, so that the
// next Open on the same runtime directory adopts it. A child that is being
// stopped when Leave is called is stopped first (its grace is bounded);
// children spawned by this Agent stay children of this process until it
// exits. Idempotent; after Close it does nothing.
func (a *Agent) Leave() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.log.Info("master leaving; children keep running for the next start")
	err := a.shutdown()
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	for _, c := range kids {
		c.mu.Lock()
		proc := c.proc
		c.mu.Unlock()
		if proc != nil {
			proc.Release()
		}
	}
	return err
}

// shutdown ends every goroutine of the Agent and closes its files. Children
// that still run are left alone: their waiters return on the cancelled
// context and their pipes close.
func (a *Agent) shutdown() error {
	a.cancel(ErrClosed)
	a.closeControl()
	// The link closes on the cancelled context (linkOnce); closing it here
	// under a.mu could wait for the WebSocket close handshake.
	a.wg.Wait()
	// After the goroutines (a stop under way needs its driver), before
	// master.db closes (a driver restart persists its state): external
	// drivers and their tasks are left running for the next master. After
	// Close they are closed already.
	a.closeDrivers(true)
	a.ingress.close() // after the link: no mesh frame comes any more
	if a.gateway != nil {
		a.gateway.close()
	}
	err := a.office.Close()
	if serr := a.state.close(); err == nil {
		err = serr
	}
	return err
}

// routeTo returns the local address the kernel would use to reach the
// lanmanager (no packet is sent), or 127.0.0.1.
func routeTo(linkURL string) string {
	u, err := url.Parse(linkURL)
	if err == nil {
		if c, err := net.Dial("udp", u.Host); err == nil {
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).IP.String()
		}
	}
	return "127.0.0.1"
}

// Children lists the children this master runs.
func (a *Agent) Children() []pipes.ChildInfo {
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	out := make([]pipes.ChildInfo, 0, len(kids))
	for _, c := range kids {
		out = append(out, c.info())
	}
	sortChildren(out)
	return out
}

// Mirror is the master's copy of the running set, kept while the link is
// down.
func (a *Agent) Mirror() *Mirror { return a.mirror }

func (a *Agent) helloLocked() *pipes.Hello {
	h := &pipes.Hello{ID: a.id, Boot: a.boot, Name: a.name, Address: a.addr, Version: a.opts.Version,
		Ranges: map[needs.Protocol][2]int{}, Free: map[needs.Protocol]int{}, Exits: a.unsent, Services: true, Loads: true,
		Drivers: a.Drivers()}
	for p, r := range a.office.Ranges() {
		h.Ranges[p] = [2]int{r.Start, r.End()}
		h.Free[p] = a.office.Free(p)
	}
	for _, c := range a.children {
		if s, ok := c.startedReport(); ok {
			s.Address = a.addr
			h.Allocs = append(h.Allocs, s)
		}
	}
	return h
}
