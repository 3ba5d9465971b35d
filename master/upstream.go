package master

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/mesh"
	"berth/needs"
	"berth/pipes"
)

// upstreamHost is where upstream listeners listen: loopback only, on a
// port the kernel picks (never one of the lease ranges).
const upstreamHost = "127.0.0.1"

// peersDir is the directory of the peers files, under the runtime
// directory.
const peersDir = "peers"

// hasMesh reports whether a need's children get a childMesh.
func hasMesh(n *needs.Need) bool { return len(n.Upstreams) > 0 || n.Peers }

// childMesh is one child's side of the mesh (docs/mesh.md, "Upstreams and
// peers"): a mesh.Proxy on a loopback listener per upstream of its need,
// balancing over the running instances of the upstream's need, its peers
// file, and the lifecycle messages on its pipe (pipes.TypeMeshReady ...).
//
// Two goroutines, owned by the Agent's WaitGroup, run from start until the
// child is gone (c.done) or the Agent closes or leaves: run follows the
// mirror (proxies, peers file, signal, state) and send writes the messages
// on the pipe, so that a child that does not read its pipe delays only its
// own messages. run closes the proxies when it returns; close does it for
// a child that never started.
type childMesh struct {
	a      *Agent
	c      *child
	ups    []*upstream
	peers  string         // the peers file; "" unless the need has peers
	signal syscall.Signal // sent on a change of peers; 0 for none
	wake   chan struct{}  // a token for send (coalesced)

	// Used by run only (and before it starts, by open).
	peersJSON []byte // the peers file's content as last written
	started   bool   // the child runs: changes of peers are signalled

	mu      sync.Mutex // Protects following. Taken under child.mu (info), never the other way.
	state   *pipes.MeshState
	closing string // why the master stops the child; "" until it does
}

// upstream is one of a child's upstream listeners.
type upstream struct {
	u       needs.Upstream
	port    int              // its port: picked at the first listen, kept for good
	p       *mesh.Proxy      // nil while not open
	balance pipes.MeshTarget // p's strategy: the target need's balance when p took it (zero: round-robin)
	err     string           // why not open
	backoff time.Duration
	retryAt time.Time
}

// openChildMesh opens a child's upstream listeners and writes its peers
// file. ports holds the recorded ports of an adopted child (nil for a new
// one): an upstream that cannot listen again on its port is retried (see
// run), while one of a new child that cannot listen at all fails the spawn.
func (a *Agent) openChildMesh(c *child, ports map[string]int, peersPath string, adopted bool) (*childMesh, error) {
	m := &childMesh{a: a, c: c, wake: make(chan struct{}, 1)}
	if c.need.Peers {
		m.peers = peersPath
		if m.peers == "" {
			m.peers = filepath.Join(a.cfg.RuntimeDirectory, peersDir, c.alloc+".json")
		}
		switch c.need.PeersSignal {
		case "HUP":
			m.signal = syscall.SIGHUP
		case "USR1":
			m.signal = syscall.SIGUSR1
		case "USR2":
			m.signal = syscall.SIGUSR2
		}
	}
	for _, u := range c.need.Upstreams {
		up := &upstream{u: u, port: ports[u.Name]}
		m.ups = append(m.ups, up)
		if adopted && up.port == 0 {
			up.err = "no port recorded for it: the child was started without it"
			continue
		}
		if err := m.listen(up); err != nil && !adopted {
			m.close()
			return nil, err
		}
	}
	m.started = adopted
	if !adopted {
		if err := m.reconcile(); err != nil {
			m.close()
			return nil, err
		}
	}
	return m, nil
}

// listen opens up's listener on its port (0: the kernel picks one).
func (m *childMesh) listen(up *upstream) error {
	p := mesh.New(mesh.Config{GraceFrom: m.a.meshGrace, ClientFirst: up.u.Protocol.ClientFirst(),
		Logger: m.a.log.With("instance", m.c.instance, "upstream", up.u.Name, "need", up.u.Need)})
	addr, err := p.Listen(net.JoinHostPort(upstreamHost, strconv.Itoa(up.port)))
	if err != nil {
		p.Close()
		up.backoff = min(max(2*up.backoff, ingressRetryBase), ingressRetryMax)
		up.retryAt = time.Now().Add(up.backoff)
		msg := fmt.Sprintf("cannot listen: %v", err)
		if msg != up.err {
			m.a.log.Error("upstream listener", "instance", m.c.instance, "upstream", up.u.Name, "err", err, "retry_in", up.backoff)
		}
		up.err = msg
		return fmt.Errorf("upstream %s: %w", up.u.Name, err)
	}
	up.p, up.port, up.err, up.backoff, up.balance = p, addr.(*net.TCPAddr).Port, "", 0, pipes.MeshTarget{}
	return nil
}

// balance gives up's proxy the balance of its target need, as the last
// mesh frame gave it: an upstream balances like the need's ingress
// (round-robin when the need does not exist, or a lanmanager of an older
// version gave none). The resource strategy gets the heartbeats of the
// target's instances (feedStats).
func (m *childMesh) balance(up *upstream) {
	t, _ := m.a.mirror.Target(up.u.Need)
	t.Name = ""
	if t == up.balance {
		return
	}
	w, err := mesh.ParseWeights(t.Weights)
	var st mesh.Strategy
	if err == nil {
		st, err = mesh.NewStrategy(mesh.Balance(cmp.Or(t.Balance, string(mesh.RoundRobin))), mesh.StrategyOptions{Weights: w})
	}
	if err != nil { // the link validated it: a newer lanmanager's balance?
		m.a.log.Error("upstream balance", "instance", m.c.instance, "upstream", up.u.Name, "need", up.u.Need, "err", err)
		return
	}
	up.p.SetStrategy(st)
	up.balance = t
	m.a.log.Info("upstream balance", "instance", m.c.instance, "upstream", up.u.Name, "need", up.u.Need, "balance", st.Balance())
}

// env is the child's variables of the mesh: BERTH_UPSTREAM_<NAME> and
// BERTH_PEERS_FILE.
func (m *childMesh) env() []string {
	var out []string
	for _, up := range m.ups {
		out = append(out, up.u.EnvName()+"="+net.JoinHostPort(upstreamHost, strconv.Itoa(up.port)))
	}
	if m.peers != "" {
		out = append(out, "BERTH_PEERS_FILE="+m.peers)
	}
	return out
}

// ports is what the child's record keeps of its upstreams.
func (m *childMesh) ports() map[string]int {
	if len(m.ups) == 0 {
		return nil
	}
	out := make(map[string]int, len(m.ups))
	for _, up := range m.ups {
		out[up.u.Name] = up.port
	}
	return out
}

// start starts run and send, once the child runs.
func (m *childMesh) start() {
	m.a.wg.Add(2)
	go func() { defer m.a.wg.Done(); m.run() }()
	go func() { defer m.a.wg.Done(); m.send() }()
}

// close closes the listeners (and their connections); idempotent.
func (m *childMesh) close() {
	for _, up := range m.ups {
		if up.p != nil {
			up.p.Close()
		}
	}
}

// poke wakes send.
func (m *childMesh) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// setClosing records that the master is stopping the child, for send.
func (m *childMesh) setClosing(why string) {
	m.mu.Lock()
	if m.closing == "" {
		m.closing = why
		if m.closing == "" {
			m.closing = "stopped"
		}
	}
	m.mu.Unlock()
	m.poke()
}

// info is what `master ps` shows of the upstreams (without targets).
func (m *childMesh) info() []pipes.UpstreamState {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		return nil
	}
	out := make([]pipes.UpstreamState, len(m.state.Upstreams))
	for i, u := range m.state.Upstreams {
		u.Targets = nil
		out[i] = u
	}
	return out
}

// run follows the mirror until the child is gone or the Agent ends. Every
// statsEvery it hands the upstreams balanced by resource the heartbeats of
// their targets' instances (as ingress does).
func (m *childMesh) run() {
	defer m.close()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	feed := time.NewTicker(statsEvery)
	defer feed.Stop()
	for {
		changed := m.a.mirror.Changed() // taken before the set is read
		if err := m.reconcile(); err != nil {
			m.a.log.Error("peers file", "instance", m.c.instance, "err", err)
		}
		retry.Reset(m.nextRetry())
		select {
		case <-m.c.done:
			if m.peers != "" {
				os.Remove(m.peers)
			}
			return
		case <-m.a.ctx.Done():
			return // Leave: the file stays for the next master
		case <-changed:
		case <-retry.C:
		case <-feed.C:
			m.feedStats()
		}
	}
}

// feedStats hands each upstream balanced by resource the latest heartbeats
// of its target's instances, on this master or elsewhere (Agent.loadOf).
func (m *childMesh) feedStats() {
	var sets map[string][]pipes.Service
	for _, up := range m.ups {
		if up.p == nil || mesh.Balance(up.balance.Balance) != mesh.Resource {
			continue
		}
		if sets == nil {
			_, sets = m.a.mirror.Snapshot()
		}
		for _, s := range sets[up.u.Need] {
			if st, ok := m.a.loadOf(s.Alloc); ok {
				up.p.SetStats(s.Instance+"/"+s.Alloc, st)
			}
		}
	}
}

// nextRetry is how long until the first shut listener is due.
func (m *childMesh) nextRetry() time.Duration {
	d := time.Hour
	for _, up := range m.ups {
		if up.p == nil && up.port != 0 {
			d = min(d, max(time.Until(up.retryAt), 0))
		}
	}
	return d
}

// reconcile re-opens shut listeners that are due, feeds each proxy its
// need's running set, rewrites the peers file when the peers changed
// (signalling the child if asked) and publishes the state for send. An
// adopted child is left alone until the mirror holds a set: an empty
// mirror would tell it that every peer is gone.
func (m *childMesh) reconcile() error {
	rev, sets := m.a.mirror.Snapshot()
	now := time.Now()
	for _, up := range m.ups {
		if up.p == nil && up.port != 0 && !now.Before(up.retryAt) {
			if m.listen(up) == nil {
				m.a.log.Info("upstream listener open again", "instance", m.c.instance, "upstream", up.u.Name, "port", up.port)
			}
		}
		if up.p != nil {
			m.balance(up)
			if err := up.p.Update(backends(sets[up.u.Need], up.u.Protocol)); err != nil && !errors.Is(err, mesh.ErrClosed) {
				m.a.log.Error("upstream: update backends", "instance", m.c.instance, "upstream", up.u.Name, "err", err)
			}
		}
	}
	if rev == 0 && m.started {
		return nil
	}
	st := m.compute(sets)
	var err error
	if m.peers != "" {
		err = m.writePeers(st.Peers)
	}
	m.mu.Lock()
	m.state = &st
	m.mu.Unlock()
	m.poke()
	return err
}

// compute is the child's state from the running set.
func (m *childMesh) compute(sets map[string][]pipes.Service) pipes.MeshState {
	var st pipes.MeshState
	for _, up := range m.ups {
		us := pipes.UpstreamState{Name: up.u.Name, Need: up.u.Need, Protocol: up.u.Protocol, Error: up.err, Targets: []pipes.Peer{}}
		if up.p != nil {
			us.Address = net.JoinHostPort(upstreamHost, strconv.Itoa(up.port))
		}
		for _, s := range sets[up.u.Need] {
			if s.Ports[up.u.Protocol] > 0 && len(us.Targets) < pipes.MaxPeers {
				us.Targets = append(us.Targets, peerOf(s))
			}
		}
		if len(us.Targets) == 0 && us.Error == "" {
			us.Error = fmt.Sprintf("need %s has no running instance with a %s port: connections are accepted and closed", up.u.Need, up.u.Protocol)
		}
		st.Upstreams = append(st.Upstreams, us)
	}
	if m.c.need.Peers {
		st.Peers = []pipes.Peer{}
		for _, s := range sets[m.c.need.Name] {
			if len(st.Peers) < pipes.MaxPeers {
				st.Peers = append(st.Peers, peerOf(s))
			}
		}
	}
	return st
}

func peerOf(s pipes.Service) pipes.Peer {
	return pipes.Peer{Instance: s.Instance, Master: s.Master, Address: s.Address, Ports: s.Ports}
}

// writePeers replaces the peers file if its content changed: a temporary
// file in the same directory, mode 0600, renamed over it. Once the child
// runs, a change is signalled if the need asks.
func (m *childMesh) writePeers(peers []pipes.Peer) error {
	b, err := json.Marshal(peers)
	if err != nil {
		return err
	}
	if bytes.Equal(b, m.peersJSON) {
		return nil
	}
	if err := writeFileAtomic(m.peers, append(b, '\n')); err != nil {
		return err
	}
	m.peersJSON = b
	if m.started && m.signal != 0 {
		m.signalLeader()
	}
	return nil
}

// signalLeader sends the peers signal to the child's leader (its process
// group leader) while it runs, once it said ready or the lanmanager
// approved it: a process whose handler is not installed yet would die of
// SIGHUP, and reads the file when it gets there anyway.
func (m *childMesh) signalLeader() {
	m.c.mu.Lock()
	proc, up := m.c.proc, m.c.ready || m.c.approved
	m.c.mu.Unlock()
	if proc == nil || !up {
		return
	}
	select {
	case <-proc.Done():
		return
	default:
	}
	if err := syscall.Kill(proc.PID(), m.signal); err != nil {
		m.a.log.Warn("signal peers change", "instance", m.c.instance, "pid", proc.PID(), "signal", m.signal, "err", err)
	}
}

// writeFileAtomic writes b to a temporary file next to path and renames it
// over path, so that a reader sees the old file or the new one, whole.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// send writes the lifecycle messages on the child's pipe: ready (the whole
// state) on each new connection, change when the state changed, error for
// each upstream whose error appeared (again after each ready), and close
// once the master stops the child, after which no change is sent.
func (m *childMesh) send() {
	var gen uint64              // the connection last sent on
	var sent []byte             // the state last sent on it
	var closeSent bool          // on it
	errs := map[string]string{} // upstream → error last sent on it
	for {
		select {
		case <-m.wake:
		case <-m.c.done:
			return
		case <-m.a.ctx.Done():
			return
		}
		m.c.mu.Lock()
		conn, g := m.c.conn, m.c.connGen
		m.c.mu.Unlock()
		m.mu.Lock()
		st, closing := m.state, m.closing
		m.mu.Unlock()
		if conn == nil || st == nil {
			continue
		}
		b, err := json.Marshal(st)
		if err != nil {
			continue
		}
		switch {
		case g != gen:
			gen, sent, closeSent = g, nil, false
			clear(errs)
			if closing == "" {
				m.sendOn(conn, pipes.TypeMeshReady, json.RawMessage(b))
				sent = b
			}
		case closing == "" && !bytes.Equal(b, sent):
			m.sendOn(conn, pipes.TypeMeshChange, json.RawMessage(b))
			sent = b
		}
		if closing == "" {
			for _, u := range st.Upstreams {
				if u.Error != errs[u.Name] && u.Error != "" {
					m.sendOn(conn, pipes.TypeMeshError, pipes.MeshError{Upstream: u.Name, Need: u.Need, Message: u.Error})
				}
				errs[u.Name] = u.Error
			}
		}
		if closing != "" && !closeSent {
			m.sendOn(conn, pipes.TypeMeshClose, pipes.MeshClose{Reason: truncate(closing, pipes.MaxMeshErrorLen)})
			closeSent = true
		}
	}
}

// sendOn sends one message. A child that does not read its pipe blocks it
// until the pipe is closed (the child exits, or the Agent ends); a broken
// connection is replaced by the child's next one, which gets a ready.
func (m *childMesh) sendOn(conn *pipes.Conn, typ string, body any) {
	if err := conn.SendBody(typ, 0, body); err != nil && !errors.Is(err, net.ErrClosed) {
		m.a.log.Warn("child pipe", "instance", m.c.instance, "type", typ, "err", err)
	}
}

// truncate cuts s to at most n bytes of valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
