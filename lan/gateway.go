package lan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"berth/gateway"
	"berth/internal/httplimit"
	"berth/needs"
)

// DefaultGatewayPort is the gateway's default port, on the API's host.
const DefaultGatewayPort = 8000

// GatewayTokenFile is the name of the gateway token's file in a data
// directory: never the API token; a gateway need's instances get it
// (BERTH_GATEWAY_TOKEN) to push to their clients.
const GatewayTokenFile = "gateway-token"

// LoadOrCreateGatewayToken is LoadOrCreateToken for the gateway's token.
func LoadOrCreateGatewayToken(dir string) (token, path string, created bool, err error) {
	return loadOrCreateSecret(dir, GatewayTokenFile)
}

// GatewayListenFor is the gateway's default address for an API address:
// port 8000 on the API's host.
func GatewayListenFor(apiListen string) string {
	host, _, err := net.SplitHostPort(apiListen)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultGatewayPort))
}

// DefaultGatewayMaxConns bounds a gateway's open connections.
const DefaultGatewayMaxConns = gateway.DefaultMaxConns

// Gateway is the WebSocket gateway (package gateway) on its own listener,
// in front of the needs published with --gateway. It reads the running
// instances from a Server's read view, set with Attach once the Server is
// open; until then, and for a need without running instances, a client is
// told there is none.
type Gateway struct {
	gw    *gateway.Server
	ln    net.Listener
	http  *http.Server
	token string
	wg    sync.WaitGroup
	once  sync.Once
	srv   atomic.Pointer[Server]
	next  atomic.Uint64 // round-robin over the running instances
}

// GatewayConfig configures OpenGateway.
type GatewayConfig struct {
	Listen string
	// Token guards the management paths and is given to the instances.
	Token   string
	Options gateway.Options // limits; Pick, Published, Token and Logger are set here
	// MaxConns bounds the connections open at once, WebSockets included
	// (DefaultGatewayMaxConns if 0): beyond it clients wait in the backlog.
	MaxConns int
	Logger   *slog.Logger
}

// OpenGateway listens on cfg.Listen and serves the gateway there.
func OpenGateway(ctx context.Context, cfg GatewayConfig) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Token == "" {
		return nil, errors.New("gateway: a token is required")
	}
	g := &Gateway{token: cfg.Token}
	opts := cfg.Options
	opts.Pick, opts.Published, opts.Token, opts.Logger = g.pick, g.published, cfg.Token, cfg.Logger
	gw, err := gateway.NewServer(opts)
	if err != nil {
		return nil, err
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultGatewayMaxConns
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		gw.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.gw, g.ln = gw, httplimit.Limit(ln, cfg.MaxConns, cfg.Logger)
	g.http = httplimit.Server(gw)
	g.wg.Go(func() {
		if err := g.http.Serve(g.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("gateway serve", "err", err)
		}
	})
	cfg.Logger.Info("gateway listening", "addr", g.Addr())
	return g, nil
}

// Attach makes the gateway read needs and instances from s.
func (g *Gateway) Attach(s *Server) { g.srv.Store(s) }

// Addr is the address the gateway listens on.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Close closes every socket (1001) and stops listening. Idempotent.
func (g *Gateway) Close() error {
	g.once.Do(func() {
		g.gw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if g.http.Shutdown(ctx) != nil {
			g.http.Close() // connections still open after the grace
		}
		g.wg.Wait()
	})
	return nil
}

// published reports whether need exists and has --gateway.
func (g *Gateway) published(need string) bool {
	s := g.srv.Load()
	if s == nil {
		return false
	}
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	n := s.view.needs[need]
	return n != nil && n.Gateway
}

// pick returns the http address of a running instance of need, in turn.
func (g *Gateway) pick(need string) (string, error) {
	s := g.srv.Load()
	if s == nil {
		return "", errors.New("the lanmanager is starting")
	}
	v := s.view
	v.mu.RLock()
	var running []*needs.Instance
	for _, in := range v.byNeed[need] {
		if in.State == needs.Running && !in.Removing && in.Ports[needs.HTTP] > 0 {
			running = append(running, in)
		}
	}
	total := len(v.byNeed[need])
	v.mu.RUnlock()
	// In index order: the map's order changes at every read, and the turn
	// must go round the same list.
	slices.SortFunc(running, func(a, b *needs.Instance) int { return a.Index - b.Index })
	addrs := make([]string, len(running))
	for i, in := range running {
		addrs[i] = net.JoinHostPort(in.Address, strconv.Itoa(in.Ports[needs.HTTP]))
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("%d of its %d instance(s) running", 0, total)
	}
	return addrs[int(g.next.Add(1)-1)%len(addrs)], nil
}

// childEnv is what an instance of a gateway need gets.
func (g *Gateway) childEnv(n *needs.Need, env map[string]string) map[string]string {
	if !n.Gateway {
		return env
	}
	if env == nil {
		env = map[string]string{}
	}
	env["BERTH_GATEWAY_TOKEN"] = g.token
	return env
}
