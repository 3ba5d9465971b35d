package lan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"berth/internal/httplimit"
	"berth/ipchub"
	"berth/needs"
	"berth/pipes"
)

// DefaultIPCPort is the IPC hub's default port, on the API's host.
const DefaultIPCPort = 9163

// IPCConfig configures the IPC hub a lanmanager serves on its own
// listener (see OpenIPC).
type IPCConfig struct {
	// Listen is the hub's address, e.g. "127.0.0.1:9163".
	Listen string
	// Token admits peers (and, through ipchub.ChildToken, children to
	// their group); empty admits anyone.
	Token string
	// AllowedHosts are more names the Host header may carry, as for the
	// API (see Config.AllowedHosts).
	AllowedHosts []string
	// MaxConns bounds the connections open at once, peers' WebSockets
	// included (DefaultIPCMaxConns if 0): beyond it clients wait in the
	// backlog.
	MaxConns int
	// Hub sets the hub's limits; its Token and Logger are overridden.
	Hub    ipchub.Options
	Logger *slog.Logger
}

// DefaultIPCMaxConns bounds the hub's open connections.
const DefaultIPCMaxConns = 4096

// IPCHub is an ipchub.Server on its own listener, behind the API's
// defences against web pages: a Host that does not name this machine gets
// 421, a request from another origin 403. It is independent of Server: a
// Server given one (Config.IPC) hands children its address and their
// tokens and reports it on GET /v1/ipc, but the hub's peers never wait for
// the Server, nor it for them.
type IPCHub struct {
	hub   *ipchub.Server
	ln    net.Listener
	http  *http.Server
	hosts *hostGuard
	token string
	log   *slog.Logger
	wg    sync.WaitGroup
	once  sync.Once
	refs  *rateLog
}

// ipcTokenRE is what an IPC token may hold: AceBase puts it in the query
// string without escaping it.
var ipcTokenRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,256}$`)

// ValidateIPCToken checks a token given for the hub.
func ValidateIPCToken(t string) error {
	if !ipcTokenRE.MatchString(t) {
		return errors.New("want 1-256 of A-Z, a-z, 0-9, '.', '_', '~' and '-' (AceBase sends it in the URL unescaped)")
	}
	return nil
}

// OpenIPC listens on cfg.Listen and serves the hub there.
func OpenIPC(ctx context.Context, cfg IPCConfig) (*IPCHub, error) {
	if cfg.Token != "" {
		if err := ValidateIPCToken(cfg.Token); err != nil {
			return nil, fmt.Errorf("ipc token: %v", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultIPCMaxConns
	}
	raw, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("ipc hub: %w", err)
	}
	ln := httplimit.Limit(raw, cfg.MaxConns, cfg.Logger)
	opts := cfg.Hub
	opts.Token, opts.Logger = cfg.Token, cfg.Logger
	h := &IPCHub{hub: ipchub.NewServer(opts), ln: ln, hosts: newHostGuard(cfg.Listen, cfg.AllowedHosts),
		token: cfg.Token, log: cfg.Logger, refs: newRateLog(refusedLogInterval)}
	h.http = httplimit.Server(h.guard(h.hub))
	h.wg.Go(func() {
		if err := h.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("ipc hub serve", "err", err)
		}
	})
	h.log.Info("ipc hub listening", "addr", h.Addr(), "token", cfg.Token != "")
	return h, nil
}

// guard refuses what a web page sends: a Host that does not name this
// machine (DNS rebinding) and requests from another origin. The WebSocket
// library refuses cross-origin upgrades too; this also covers the
// large-message POST and GET.
func (h *IPCHub) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why, code, msg := "", 0, ""
		if !h.hosts.allows(r.Host) {
			why, code = "Host names another site", http.StatusMisdirectedRequest
			msg = fmt.Sprintf("Host %q does not name this IPC hub; if it should, start the lanmanager with --allowed-host %s", r.Host, hostOnly(r.Host))
		} else if m := crossOrigin(r); m != "" {
			why, code, msg = "cross-origin", http.StatusForbidden, m
		}
		if code == 0 {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if ok, held := h.refs.allow(host+" "+why, time.Now()); ok {
			h.log.Warn("ipc hub refused a request", "why", why, "remote", host, "path", r.URL.Path, "refused_since_last_line", held)
		}
		http.Error(w, msg, code)
	})
}

// Addr is the address the hub listens on.
func (h *IPCHub) Addr() string { return h.ln.Addr().String() }

// Hub is the hub itself.
func (h *IPCHub) Hub() *ipchub.Server { return h.hub }

// Close disconnects every peer (status 1001) and stops listening.
// Idempotent.
func (h *IPCHub) Close() error {
	h.once.Do(func() {
		h.hub.Close() // peers first: Shutdown does not wait for hijacked connections
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if h.http.Shutdown(ctx) != nil {
			h.http.Close() // connections still open after the grace
		}
		h.wg.Wait()
	})
	return nil
}

// childEnv is what a child of instance gets to reach the hub, given the
// host the master reached the lanmanager on (used when the hub listens on
// every address).
func (h *IPCHub) childEnv(n *needs.Need, instance, masterSide string) map[string]string {
	host, port, _ := net.SplitHostPort(h.Addr())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && masterSide != "" {
		host = masterSide
	}
	group := n.Group()
	env := map[string]string{
		"BERTH_IPC":       "ws://" + net.JoinHostPort(host, port),
		"BERTH_IPC_HOST":  host,
		"BERTH_IPC_PORT":  port,
		"BERTH_IPC_GROUP": group,
	}
	if h.token != "" {
		env["BERTH_IPC_TOKEN"] = ipchub.ChildToken(h.token, group, instance)
	}
	return env
}

// grantEnv adds the hub's variables to a grant for master m.
func (s *Server) grantEnv(m *session, g *pipes.Grant) {
	if s.cfg.IPC != nil {
		g.Env = s.cfg.IPC.childEnv(&g.Need, g.Instance, m.local)
	}
	if s.cfg.Gateway != nil {
		g.Env = s.cfg.Gateway.childEnv(&g.Need, g.Env)
	}
}

// IPCPeer is one peer of GET /v1/ipc.
type IPCPeer struct {
	ID string `json:"id"`
	// Need and Instance name the berth child the peer's token was made
	// for; empty for a peer that used the hub's token (or any, on a hub
	// without one).
	Need     string    `json:"need,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Remote   string    `json:"remote"`
	Since    time.Time `json:"since"`
}

// IPCGroup is one group of GET /v1/ipc.
type IPCGroup struct {
	Name  string    `json:"name"`
	Peers []IPCPeer `json:"peers"`
}

// IPCStatus is the body of GET /v1/ipc.
type IPCStatus struct {
	Listen   string          `json:"listen"`
	Token    bool            `json:"token"` // whether the hub requires one
	Groups   []IPCGroup      `json:"groups"`
	Counters ipchub.Counters `json:"counters"`
}

// ipcStatus reports the hub.
func (h *IPCHub) status() IPCStatus {
	st := IPCStatus{Listen: h.Addr(), Token: h.token != "", Groups: []IPCGroup{}, Counters: h.hub.Stats()}
	for _, g := range h.hub.Snapshot() {
		ig := IPCGroup{Name: g.Name, Peers: make([]IPCPeer, 0, len(g.Peers))}
		for _, p := range g.Peers {
			ip := IPCPeer{ID: p.ID, Remote: p.Remote, Since: p.Since.UTC()}
			if need, _, err := needs.ParseInstanceName(p.Who); err == nil {
				ip.Need, ip.Instance = need, p.Who
			}
			ig.Peers = append(ig.Peers, ip)
		}
		st.Groups = append(st.Groups, ig)
	}
	return st
}

// handleIPC serves GET /v1/ipc.
func (s *Server) handleIPC(w http.ResponseWriter, r *http.Request) {
	if s.cfg.IPC == nil {
		writeError(w, http.StatusNotFound, "this lanmanager serves no IPC hub (--ipc-listen off)")
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.IPC.status())
}

// IPCListenFor is the hub's default address for an API address: port 9163
// on the API's host.
func IPCListenFor(apiListen string) string {
	host, _, err := net.SplitHostPort(apiListen)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultIPCPort))
}
