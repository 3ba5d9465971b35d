package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"berth/lan"
)

// Config is the lanmanager server's configuration, filled from flags.
type Config struct {
	Listen  string
	DataDir string
	Token   string
	// InsecureNoToken runs without a token (the browser defences stay).
	InsecureNoToken bool
	// AllowedHosts are more names the Host header may carry.
	AllowedHosts cli.StringSlice
	// AnnounceDir is where the lanmanager says where its data directory is
	// (see announceDir).
	AnnounceDir   string
	Verbose       bool
	StartDeadline time.Duration
	MasterTTL     time.Duration
	StopGrace     time.Duration
	// AutoRebalance rebalances a need whose instances have spread unevenly
	// for RebalanceAfter.
	AutoRebalance  bool
	RebalanceAfter time.Duration
	// IPCListen is the IPC hub's address: "" for port 9163 on the API's
	// host, "off" for no hub. IPCToken is the hub's token ("": the one
	// kept in the data directory).
	IPCListen string
	IPCToken  string
	// GatewayListen and GatewayToken are the same for the WebSocket
	// gateway (default port 8000, token in <data>/gateway-token).
	GatewayListen string
	GatewayToken  string

	masterGrace time.Duration // --master-grace, the old name of --master-ttl
	// anyPort: a default port that is taken gives way to a free one (dev
	// mode, which is for trying berth on a machine that runs other
	// things), instead of no hub or gateway (serve).
	anyPort bool
}

// onFreePort is listen with port 0: any free port on the same host.
func onFreePort(listen string) string {
	host, _, _ := net.SplitHostPort(listen)
	return net.JoinHostPort(host, "0")
}

// Validate checks the listen address and the durations.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %v", c.Listen, err)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"--start-deadline", c.StartDeadline}, {"--master-ttl", c.MasterTTL}, {"--stop-grace", c.StopGrace}, {"--rebalance-after", c.RebalanceAfter}} {
		if f.d < 0 || f.d > 24*time.Hour {
			return fmt.Errorf("%s %s: must be between 0 and 24h", f.name, f.d)
		}
	}
	for _, h := range c.AllowedHosts.Value() {
		if h == "" || strings.ContainsAny(h, "/:@ \t") && net.ParseIP(strings.Trim(h, "[]")) == nil {
			return fmt.Errorf("--allowed-host %q: want a host name or IP address, without scheme or port", h)
		}
	}
	if c.IPCListen != "" && c.IPCListen != "off" {
		if _, _, err := net.SplitHostPort(c.IPCListen); err != nil {
			return fmt.Errorf("--ipc-listen %q: %v (or off)", c.IPCListen, err)
		}
	}
	if c.IPCToken != "" {
		if err := lan.ValidateIPCToken(c.IPCToken); err != nil {
			return fmt.Errorf("--ipc-token: %v", err)
		}
		if c.IPCToken == c.Token {
			return fmt.Errorf("--ipc-token: must not be the API token: children are given tokens made from it")
		}
	}
	if c.GatewayListen != "" && c.GatewayListen != "off" {
		if _, _, err := net.SplitHostPort(c.GatewayListen); err != nil {
			return fmt.Errorf("--gateway-listen %q: %v (or off)", c.GatewayListen, err)
		}
	}
	if c.GatewayToken != "" {
		if err := lan.ValidateIPCToken(c.GatewayToken); err != nil {
			return fmt.Errorf("--gateway-token: %v", err)
		}
		if c.GatewayToken == c.Token {
			return fmt.Errorf("--gateway-token: must not be the API token: every instance of a gateway need gets it")
		}
	}
	if c.RebalanceAfter < time.Second {
		return fmt.Errorf("--rebalance-after %s: must be at least 1s", c.RebalanceAfter)
	}
	if c.MasterTTL < minMasterTTL {
		return fmt.Errorf("--master-ttl %s: must be at least %s (masters ping every fifth of it)", c.MasterTTL, minMasterTTL)
	}
	return nil
}

const minMasterTTL = 100 * time.Millisecond

// resolve applies the old flag name: --master-grace sets the TTL unless
// --master-ttl is given too.
func (c *Config) resolve(cl *cli.Context) error {
	if cl.IsSet("master-grace") {
		if cl.IsSet("master-ttl") && c.masterGrace != c.MasterTTL {
			return fmt.Errorf("--master-grace is the old name of --master-ttl: give one of them")
		}
		c.MasterTTL = c.masterGrace
	}
	if cl.IsSet("rebalance-after") && !c.AutoRebalance {
		return fmt.Errorf("--rebalance-after: only with --auto-rebalance")
	}
	return c.Validate()
}

func (c *Config) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: lan.DefaultListen, Usage: "address of the HTTP API and WebSocket endpoints", Destination: &c.Listen},
		&cli.StringFlag{Name: "token", EnvVars: []string{"BERTH_TOKEN"}, Usage: "bearer token required on every call, masters included (default: one generated on first start and kept in <data>/token)", Destination: &c.Token},
		&cli.BoolFlag{Name: "insecure-no-token", Usage: "require no token: anyone who reaches the port can run commands on every master", Destination: &c.InsecureNoToken},
		&cli.StringSliceFlag{Name: "allowed-host", Usage: "a name clients may use for this lanmanager (Host header) besides localhost, its IP addresses, its listen host and the machine's host name; repeatable", Destination: &c.AllowedHosts},
		announceFlag(&c.AnnounceDir),
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging", Destination: &c.Verbose},
		&cli.DurationFlag{Name: "start-deadline", Value: 30 * time.Second, Usage: "how long a new child has for every declared port to answer", Destination: &c.StartDeadline},
		&cli.DurationFlag{Name: "master-ttl", Value: 5 * time.Second, Usage: "a master not heard from for this long is lost and its instances are placed elsewhere; masters ping every fifth of it", Destination: &c.MasterTTL},
		&cli.DurationFlag{Name: "master-grace", Value: 5 * time.Second, Hidden: true, Usage: "old name of --master-ttl", Destination: &c.masterGrace},
		&cli.BoolFlag{Name: "auto-rebalance", Aliases: []string{"auto"}, Usage: "move instances by themselves, one at a time and start-before-stop, when a need's spread over the masters differs by more than one instance for --rebalance-after", Destination: &c.AutoRebalance},
		&cli.DurationFlag{Name: "rebalance-after", Value: time.Minute, Usage: "with --auto-rebalance, how long a need's spread must stay uneven before its instances move (1s to 24h)", Destination: &c.RebalanceAfter},
		&cli.StringFlag{Name: "ipc-listen", Usage: "address of the IPC hub (acebase-ipc-server protocol), or off (default: port 9163 on the --listen host)", Destination: &c.IPCListen},
		&cli.StringFlag{Name: "ipc-token", Usage: "token of the IPC hub; children get tokens made from it for their group (default: one generated on first start and kept in <data>/ipc-token)", Destination: &c.IPCToken},
		&cli.StringFlag{Name: "gateway-listen", Usage: "address of the WebSocket gateway (clients connect at ws://ADDR/NEED), or off (default: port 8000 on the --listen host)", Destination: &c.GatewayListen},
		&cli.StringFlag{Name: "gateway-token", Usage: "token of the gateway's management paths, given to the instances of gateway needs as BERTH_GATEWAY_TOKEN (default: one generated on first start and kept in <data>/gateway-token)", Destination: &c.GatewayToken},
		&cli.DurationFlag{Name: "stop-grace", Value: 5 * time.Second, Usage: "time between SIGTERM and SIGKILL when stopping a child", Destination: &c.StopGrace},
	}
}

// lanConfig is the lan.Config for this configuration.
func (c *Config) lanConfig(log *slog.Logger, hub *lan.IPCHub, gw *lan.Gateway) lan.Config {
	return lan.Config{IPC: hub, Gateway: gw, Listen: c.Listen, DataDir: c.DataDir, Token: c.Token, AllowedHosts: c.AllowedHosts.Value(), Logger: log,
		StartDeadline: c.StartDeadline, MasterTTL: c.MasterTTL, StopGrace: c.StopGrace,
		AutoRebalance: c.AutoRebalance, RebalanceAfter: c.RebalanceAfter}
}

// openIPC opens the IPC hub of serve and dev, or returns nil with
// --ipc-listen off. When the default port is taken it warns and runs
// without a hub; a port given with --ipc-listen must be free. It returns
// the path of the token file when the token is kept there.
func (c *Config) openIPC(ctx context.Context, log *slog.Logger) (hub *lan.IPCHub, tokenPath string, err error) {
	if c.IPCListen == "off" {
		return nil, "", nil
	}
	listen := c.IPCListen
	if listen == "" {
		listen = lan.IPCListenFor(c.Listen)
	}
	token := c.IPCToken
	if token == "" {
		if token, tokenPath, _, err = lan.LoadOrCreateIPCToken(c.DataDir); err != nil {
			return nil, "", fmt.Errorf("ipc token: %w", err)
		}
	}
	hub, err = lan.OpenIPC(ctx, lan.IPCConfig{Listen: listen, Token: token, AllowedHosts: c.AllowedHosts.Value(), Logger: log})
	if err != nil && c.IPCListen == "" && errors.Is(err, syscall.EADDRINUSE) && c.anyPort {
		log.Warn("the IPC hub's default address is in use; it listens on a free port instead", "default", listen)
		hub, err = lan.OpenIPC(ctx, lan.IPCConfig{Listen: onFreePort(listen), Token: token, AllowedHosts: c.AllowedHosts.Value(), Logger: log})
	}
	if err != nil && c.IPCListen == "" && errors.Is(err, syscall.EADDRINUSE) {
		log.Warn("no IPC hub: its default address is in use; give --ipc-listen ADDR, or --ipc-listen off", "addr", listen)
		return nil, "", nil
	}
	if err != nil {
		return nil, "", cli.Exit(fmt.Sprintf("--ipc-listen %s: %v", listen, err), 1)
	}
	return hub, tokenPath, nil
}

// ipcNotice is what serve and dev print about the hub.
func ipcNotice(hub *lan.IPCHub, tokenPath string) string {
	where := "its token is the --ipc-token given"
	if tokenPath != "" {
		where = "its token is in " + tokenPath
	}
	return fmt.Sprintf("IPC hub on ws://%s (acebase-ipc-server protocol); %s; children get BERTH_IPC, BERTH_IPC_GROUP and a token of their own",
		hub.Addr(), where)
}

func (c *Config) logger() *slog.Logger {
	lvl := slog.LevelInfo
	if c.Verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// isLoopback reports whether a listen address stays on this machine.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openGateway opens the WebSocket gateway of serve and dev, as openIPC
// does the hub: nil with --gateway-listen off, a warning and none when the
// default port is taken.
func (c *Config) openGateway(ctx context.Context, log *slog.Logger) (gw *lan.Gateway, tokenPath string, err error) {
	if c.GatewayListen == "off" {
		return nil, "", nil
	}
	listen := c.GatewayListen
	if listen == "" {
		listen = lan.GatewayListenFor(c.Listen)
	}
	token := c.GatewayToken
	if token == "" {
		if token, tokenPath, _, err = lan.LoadOrCreateGatewayToken(c.DataDir); err != nil {
			return nil, "", fmt.Errorf("gateway token: %w", err)
		}
	}
	gw, err = lan.OpenGateway(ctx, lan.GatewayConfig{Listen: listen, Token: token, Logger: log})
	if err != nil && c.GatewayListen == "" && errors.Is(err, syscall.EADDRINUSE) && c.anyPort {
		log.Warn("the gateway's default address is in use; it listens on a free port instead", "default", listen)
		gw, err = lan.OpenGateway(ctx, lan.GatewayConfig{Listen: onFreePort(listen), Token: token, Logger: log})
	}
	if err != nil && c.GatewayListen == "" && errors.Is(err, syscall.EADDRINUSE) {
		log.Warn("no gateway: its default address is in use; give --gateway-listen ADDR, or --gateway-listen off", "addr", listen)
		return nil, "", nil
	}
	if err != nil {
		return nil, "", cli.Exit(fmt.Sprintf("--gateway-listen %s: %v", listen, err), 1)
	}
	return gw, tokenPath, nil
}

// gatewayNotice is what serve and dev print about the gateway.
func gatewayNotice(gw *lan.Gateway, tokenPath string) string {
	where := "its token is the --gateway-token given"
	if tokenPath != "" {
		where = "its token is in " + tokenPath
	}
	return fmt.Sprintf("gateway on ws://%s/NEED for needs added with --gateway; %s; their instances get it as BERTH_GATEWAY_TOKEN", gw.Addr(), where)
}
