package master

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"berth/gateway"
	"berth/internal/httplimit"
	"berth/needs"
	"berth/pipes"
)

// masterGateway is the WebSocket gateway a master serves on its
// gatewayaddress (docs/gateway.md), so that clients may connect near the
// instances: the lanmanager's gateway, with the needs published and the
// token from the mesh frames, and the running instances from the Mirror.
// It starts at the first mesh frame (which carries the token) and starts
// again only if the token changes. All methods are safe for concurrent
// use; close stops it.
type masterGateway struct {
	addr     string
	maxConns int // 0: gateway.DefaultMaxConns
	mirror   *Mirror
	log      *slog.Logger
	next     atomic.Uint64 // round-robin over the running instances

	mu        sync.Mutex // Protects following.
	published map[string]bool
	token     string
	gw        *gateway.Server
	srv       *http.Server
	ln        *httplimit.Listener
	served    chan struct{} // closed when srv's Serve returned
	closed    bool
}

func newMasterGateway(addr string, mirror *Mirror, log *slog.Logger) *masterGateway {
	return &masterGateway{addr: addr, mirror: mirror, log: log.With("gateway", addr), published: map[string]bool{}}
}

// setMesh takes a mesh frame: the needs on the gateway, and its token.
func (g *masterGateway) setMesh(m *pipes.Mesh) {
	pub := map[string]bool{}
	for _, n := range m.Needs {
		if n.Gateway {
			pub[n.Name] = true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.published = pub
	if g.gw != nil && m.GatewayToken == g.token {
		return
	}
	if m.GatewayToken == "" {
		return // the lanmanager runs no gateway: nor do we
	}
	g.stopLocked()
	if err := g.startLocked(m.GatewayToken); err != nil {
		g.log.Error("gateway cannot open; it is tried again at the next mesh frame", "err", err)
	}
}

func (g *masterGateway) startLocked(token string) error {
	gw, err := gateway.NewServer(gateway.Options{Pick: g.pick, Published: g.isPublished, Token: token, Logger: g.log})
	if err != nil {
		return err
	}
	raw, err := net.Listen("tcp", g.addr)
	if err != nil {
		gw.Close()
		return err
	}
	ln := httplimit.Limit(raw, cmp.Or(g.maxConns, gateway.DefaultMaxConns), g.log)
	g.gw, g.token, g.served, g.ln = gw, token, make(chan struct{}), ln
	g.srv = httplimit.Server(gw)
	srv, served := g.srv, g.served
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("gateway serve", "err", err)
		}
	}()
	g.log.Info("gateway open", "address", ln.Addr().String())
	return nil
}

// stopLocked closes the gateway's sockets and listener and waits for its
// goroutines.
func (g *masterGateway) stopLocked() {
	if g.gw == nil {
		return
	}
	g.gw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if g.srv.Shutdown(ctx) != nil {
		g.srv.Close() // connections still open after the grace
	}
	cancel()
	<-g.served
	g.gw, g.srv, g.token, g.ln = nil, nil, "", nil
}

// close stops the gateway for good; idempotent.
func (g *masterGateway) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	g.stopLocked()
}

func (g *masterGateway) isPublished(need string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.published[need]
}

// pick returns the http address of a running instance of need, in turn.
func (g *masterGateway) pick(need string) (string, error) {
	_, set := g.mirror.Need(need)
	var addrs []string
	for _, s := range set {
		if p := s.Ports[needs.HTTP]; p > 0 && s.Address != "" {
			addrs = append(addrs, net.JoinHostPort(s.Address, strconv.Itoa(p)))
		}
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("no running instance known to this master")
	}
	return addrs[int(g.next.Add(1)-1)%len(addrs)], nil
}
