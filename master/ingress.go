package master

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"berth/mesh"
	"berth/needs"
	"berth/pipes"
)

// Ingress retry bounds: a port that cannot be opened is tried again after
// ingressRetryBase, then twice as long each time, up to ingressRetryMax.
const (
	ingressRetryBase = time.Second
	ingressRetryMax  = 30 * time.Second
)

// ingress runs the master's side of the mesh's ingress (docs/mesh.md,
// "Ingress on the masters"): for each need × ingress port of the latest
// mesh frame, a mesh.Proxy listening on the ingress address, balancing
// over the need's running instances as the Mirror holds them.
//
// One goroutine, run, owns the proxies and reconciles them with the mesh
// list and the mirror; setMesh and relinked only hand it work and may be
// called from any goroutine. close stops it and every goroutine it
// started: the proxies' accept loops and connections are closed.
type ingress struct {
	addr   string // the ingress address, an IP
	mirror *Mirror
	grace  func() time.Duration // the stop grace removed backends' connections get (Agent.meshGrace)
	log    *slog.Logger
	report func(*pipes.IngressReport) // queues a report on the current link, if any
	// stats returns the latest heartbeat figures of an instance, by
	// allocation (Agent.loadOf): the resource strategy's figures.
	stats func(alloc string) (mesh.Stats, bool)

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // owns run and the proxies' Serve goroutines
	wake   chan struct{}  // a token when mesh or resend changed (coalesced)
	failed chan served    // a Serve that ended on its own

	mu     sync.Mutex  // Protects following.
	mesh   *pipes.Mesh // the latest mesh frame; nil until the first
	resend bool        // a link's first mesh frame came: report even if unchanged
}

// served is a proxy whose Serve returned, and why.
type served struct {
	key ingressKey
	p   *mesh.Proxy
	err error
}

// ingressKey names one ingress port of one need.
type ingressKey struct {
	need  string
	proto needs.Protocol
	port  int
}

// ingressPort is run's state of one ingress port.
type ingressPort struct {
	balance string
	weights string      // the resource score's, as the mesh frame gave them
	p       *mesh.Proxy // nil while shut
	err     string      // why it is shut
	backoff time.Duration
	retryAt time.Time // when to try to open it again, while shut
}

// startIngress starts the reconciler; it opens nothing until a mesh frame
// arrives.
func startIngress(addr string, mirror *Mirror, grace func() time.Duration, log *slog.Logger, report func(*pipes.IngressReport),
	stats func(alloc string) (mesh.Stats, bool)) *ingress {
	in := &ingress{addr: addr, mirror: mirror, grace: grace, log: log, report: report, stats: stats,
		wake: make(chan struct{}, 1), failed: make(chan served)}
	in.ctx, in.cancel = context.WithCancelCause(context.Background())
	in.wg.Go(in.run)
	return in
}

// close closes every proxy and waits for every goroutine; idempotent.
func (in *ingress) close() {
	in.cancel(ErrClosed)
	in.wg.Wait()
}

// setMesh hands over a mesh frame received on the link. After the first
// of a link (first) the ingress ports are reported, changed or not, since
// that lanmanager knows nothing of them yet; after the others, only if
// they changed.
func (in *ingress) setMesh(m *pipes.Mesh, first bool) {
	in.mu.Lock()
	in.mesh, in.resend = m, in.resend || first
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

func (in *ingress) run() {
	ports := map[ingressKey]*ingressPort{}
	defer func() {
		for _, ip := range ports {
			if ip.p != nil {
				ip.p.Close()
			}
		}
	}()
	var last []pipes.IngressPort // the last report sent
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	feed := time.NewTicker(statsEvery)
	defer feed.Stop()
	for {
		changed := in.mirror.Changed() // taken before the set is read
		in.mu.Lock()
		m, resend := in.mesh, in.resend
		in.resend = false
		in.mu.Unlock()
		if m != nil {
			in.reconcile(ports, m)
			in.feedStats(ports)
			now := in.listPorts(ports)
			if resend || !slices.Equal(now, last) {
				in.report(&pipes.IngressReport{Ports: now})
				last = now
			}
		}
		retry.Reset(nextRetry(ports))
		select {
		case <-in.ctx.Done():
			return
		case <-in.wake:
		case <-changed:
		case <-retry.C:
		case <-feed.C:
			in.feedStats(ports)
			continue
		case s := <-in.failed:
			if ip := ports[s.key]; ip != nil && ip.p == s.p {
				s.p.Close()
				ip.p = nil
				in.shut(s.key, ip, s.err)
			}
		}
	}
}

// reconcile makes ports match the mesh list: a proxy per ingress port,
// open or waiting for its retry, each fed the need's running set.
func (in *ingress) reconcile(ports map[ingressKey]*ingressPort, m *pipes.Mesh) {
	type strategy struct{ balance, weights string }
	want := map[ingressKey]strategy{}
	for _, n := range m.Needs {
		for _, g := range n.Ingress {
			want[ingressKey{n.Name, g.Protocol, g.Port}] = strategy{n.Balance, n.Weights}
		}
	}
	for k, ip := range ports {
		if b, ok := want[k]; ok && b == (strategy{ip.balance, ip.weights}) {
			continue
		}
		// Gone from the list, or balanced otherwise: a proxy's strategy is
		// fixed, so it is closed (with its connections) and opened anew.
		if ip.p != nil {
			ip.p.Close()
			in.log.Info("ingress closed", "need", k.need, "proto", k.proto, "port", k.port)
		}
		delete(ports, k)
	}
	_, sets := in.mirror.Snapshot()
	now := time.Now()
	for k, st := range want {
		ip := ports[k]
		if ip == nil {
			ip = &ingressPort{balance: st.balance, weights: st.weights}
			ports[k] = ip
		}
		if ip.p == nil && !now.Before(ip.retryAt) {
			in.open(k, ip)
		}
		if ip.p != nil {
			if err := ip.p.Update(backends(sets[k.need], k.proto)); err != nil && !errors.Is(err, mesh.ErrClosed) {
				in.log.Error("ingress: update backends", "need", k.need, "port", k.port, "err", err)
			}
		}
	}
}

// open tries to open ip's port and serve it.
func (in *ingress) open(k ingressKey, ip *ingressPort) {
	w, err := mesh.ParseWeights(ip.weights)
	if err != nil {
		in.shut(k, ip, err)
		return
	}
	strategy, err := mesh.NewStrategy(mesh.Balance(ip.balance), mesh.StrategyOptions{Weights: w})
	if err != nil { // the link validated it; a newer lanmanager's balance?
		in.shut(k, ip, err)
		return
	}
	ln, err := mesh.Listen(net.JoinHostPort(in.addr, strconv.Itoa(k.port)))
	if err != nil {
		in.shut(k, ip, err)
		return
	}
	p := mesh.New(mesh.Config{Strategy: strategy, GraceFrom: in.grace, ClientFirst: k.proto.ClientFirst(),
		Logger: in.log.With("need", k.need, "proto", string(k.proto), "port", k.port)})
	ip.p, ip.err, ip.backoff, ip.retryAt = p, "", 0, time.Time{}
	in.wg.Go(func() {
		err := p.Serve(ln)
		if errors.Is(err, mesh.ErrClosed) {
			return
		}
		select {
		case in.failed <- served{k, p, err}:
		case <-in.ctx.Done():
		}
	})
	in.log.Info("ingress open", "need", k.need, "proto", k.proto, "address", ln.Addr().String(), "balance", cmp.Or(ip.balance, string(mesh.RoundRobin)))
}

// shut records why ip is not open and when to try again.
func (in *ingress) shut(k ingressKey, ip *ingressPort, err error) {
	ip.backoff = min(max(2*ip.backoff, ingressRetryBase), ingressRetryMax)
	ip.retryAt = time.Now().Add(ip.backoff)
	msg := err.Error()
	if len(msg) > pipes.MaxIngressError {
		msg = strings.ToValidUTF8(msg[:pipes.MaxIngressError], "")
	}
	if msg != ip.err {
		in.log.Warn("ingress cannot open; retrying", "need", k.need, "proto", k.proto, "port", k.port, "err", err, "in", ip.backoff)
	}
	ip.err = msg
}

// nextRetry is how long until the first shut port is due.
func nextRetry(ports map[ingressKey]*ingressPort) time.Duration {
	d := time.Hour
	for _, ip := range ports {
		if ip.p == nil {
			d = min(d, max(time.Until(ip.retryAt), 0))
		}
	}
	return d
}

// listPorts is the ingress report: every port, sorted by need, protocol
// and port.
func (in *ingress) listPorts(ports map[ingressKey]*ingressPort) []pipes.IngressPort {
	out := make([]pipes.IngressPort, 0, len(ports))
	for k, ip := range ports {
		out = append(out, pipes.IngressPort{Need: k.need, Protocol: k.proto, Port: k.port, Open: ip.p != nil, Error: ip.err})
	}
	slices.SortFunc(out, func(a, b pipes.IngressPort) int {
		return cmp.Or(cmp.Compare(a.Need, b.Need), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// backends is a need's running instances that serve proto, as the proxy
// dials them: the instance's master address and its port of proto. The
// id is "instance/alloc": an instance restarted under a new allocation is
// a new backend, free of the ejection its dead predecessor earned even if
// it got the same port back (the ids are the same on every master, so the
// hash strategy still agrees across masters).
func backends(set []pipes.Service, proto needs.Protocol) []mesh.Backend {
	out := make([]mesh.Backend, 0, len(set))
	for _, s := range set {
		if port := s.Ports[proto]; port > 0 && s.Address != "" {
			out = append(out, mesh.Backend{ID: s.Instance + "/" + s.Alloc, Addr: net.JoinHostPort(s.Address, strconv.Itoa(port))})
		}
	}
	return out
}

// statsEvery is how often the proxies of resource-balanced needs get the
// latest heartbeats of this master's children.
const statsEvery = time.Second

// feedStats hands the resource strategy the latest heartbeats of the
// backends: those of this master's children, and those the lanmanager
// passed on from the other masters (master/loads.go). A backend with none
// is scored by its connections.
func (in *ingress) feedStats(ports map[ingressKey]*ingressPort) {
	if in.stats == nil {
		return
	}
	var sets map[string][]pipes.Service
	for k, ip := range ports {
		if ip.p == nil || mesh.Balance(ip.balance) != mesh.Resource {
			continue
		}
		if sets == nil {
			_, sets = in.mirror.Snapshot()
		}
		for _, s := range sets[k.need] {
			if st, ok := in.stats(s.Alloc); ok {
				ip.p.SetStats(s.Instance+"/"+s.Alloc, st)
			}
		}
	}
}
