package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"berth/needs"
	"berth/pipes"
)

// simMaster speaks the master side of /v1/link with fake children: it bids
// yes on every offer (after bidCost), answers a grant with a child that
// started and says ready (its ports, one per declared protocol, taken from
// the port pool), counts approvals, and answers a stop with an exit. It
// pings every heartbeat the welcome asks for and answers the lanmanager's
// pings.
//
// A master the scenario cuts off goes silent: it sends nothing more and
// stops reading, so its TCP connection stays up with no FIN, as across a
// partition; or, in "close" mode, it closes its link.
type simMaster struct {
	id, name string
	conn     *pipes.Conn
	sim      *shared

	welcomed chan struct{} // closed when the welcome arrives
	hb       time.Duration // heartbeat from the welcome; set before welcomed is closed
	ttl      time.Duration // TTL from the welcome; set before welcomed is closed

	silent  atomic.Bool
	closing atomic.Bool
	done    chan struct{} // closed by close: stops the pinger and a silenced reader
	once    sync.Once
	wg      sync.WaitGroup // reader and pinger
}

// shared is what every simulated master of a run uses.
type shared struct {
	ledger  *ledger
	ports   *portPool
	bidCost time.Duration
	pid     atomic.Int64 // fake pids, counted up
	offers  atomic.Int64
	// services: the masters ask for the running set; svcFrames and
	// svcBytes count the services frames (and their bodies) all received.
	services            bool
	svcFrames, svcBytes atomic.Int64
	// failures records what went wrong on links that were not cut on purpose.
	failures *failures
}

// failures collects link failures and error frames, bounded.
type failures struct {
	mu    sync.Mutex // Protects following.
	first []string
	count int
}

func (f *failures) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	if len(f.first) < maxViolations {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f *failures) get() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.first...), f.count
}

// dialMaster connects master number i and waits for its welcome.
func dialMaster(ctx context.Context, url, token string, i int, sim *shared) (*simMaster, error) {
	var b [8]byte
	rand.Read(b[:])
	m := &simMaster{id: "sim" + hex.EncodeToString(b[:]), name: fmt.Sprintf("m%04d", i), sim: sim,
		welcomed: make(chan struct{}), done: make(chan struct{})}
	conn, err := pipes.DialWS(ctx, url, token)
	if err != nil {
		return nil, fmt.Errorf("dial master %s: %w", m.name, err)
	}
	m.conn = conn
	boot := make([]byte, 8)
	rand.Read(boot)
	err = conn.SendBody(pipes.TypeHello, 0, &pipes.Hello{ID: m.id, Name: m.name, Address: "127.0.0.1",
		Version: "sim", Boot: hex.EncodeToString(boot), Services: sim.services})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("master %s: send hello: %w", m.name, err)
	}
	m.wg.Go(m.read)
	select {
	case <-m.welcomed:
	case <-ctx.Done():
		m.close()
		return nil, fmt.Errorf("master %s: no welcome: %w", m.name, context.Cause(ctx))
	}
	m.wg.Go(m.ping)
	return m, nil
}

// read handles what the lanmanager sends, until the link closes.
func (m *simMaster) read() {
	for {
		msg, err := m.conn.Recv()
		if err != nil {
			if !m.closing.Load() && !m.silent.Load() {
				m.sim.failures.add("master %s: link closed: %v", m.name, err)
			}
			return
		}
		if m.silent.Load() {
			<-m.done // cut off: read nothing more until the run ends
			return
		}
		if err := m.handle(msg); err != nil {
			if !m.closing.Load() && !m.silent.Load() {
				m.sim.failures.add("master %s: %s: %v", m.name, msg.Type, err)
			}
			if errors.Is(err, errSend) {
				return
			}
		}
	}
}

// errSend marks a failure to write to the link.
var errSend = errors.New("send")

func (m *simMaster) send(typ string, id uint64, body any) error {
	if m.silent.Load() {
		return nil
	}
	if err := m.conn.SendBody(typ, id, body); err != nil {
		return fmt.Errorf("%w %s: %v", errSend, typ, err)
	}
	return nil
}

// handle answers one message.
func (m *simMaster) handle(msg *pipes.Msg) error {
	switch msg.Type {
	case pipes.TypeWelcome:
		var w pipes.Welcome
		if err := msg.Decode(&w); err != nil {
			return err
		}
		select {
		case <-m.welcomed:
			return fmt.Errorf("a second welcome")
		default:
		}
		if w.HeartbeatMS <= 0 || w.TTLMS <= w.HeartbeatMS {
			return fmt.Errorf("welcome heartbeat_ms %d, ttl_ms %d: want 0 < heartbeat < ttl", w.HeartbeatMS, w.TTLMS)
		}
		m.hb, m.ttl = time.Duration(w.HeartbeatMS)*time.Millisecond, time.Duration(w.TTLMS)*time.Millisecond
		close(m.welcomed)
	case pipes.TypePing:
		return m.send(pipes.TypePong, msg.ID, nil)
	case pipes.TypePong:
	case pipes.TypeServices:
		var s pipes.Services
		if err := msg.Decode(&s); err != nil {
			return err
		}
		m.sim.svcFrames.Add(1)
		m.sim.svcBytes.Add(int64(len(msg.Body)))
	case pipes.TypeMesh: // the needs with ingress: the simulated masters open none
		var mm pipes.Mesh
		return msg.Decode(&mm)
	case pipes.TypeOffer:
		var o pipes.Offer
		if err := msg.Decode(&o); err != nil {
			return err
		}
		m.sim.offers.Add(1)
		if m.sim.bidCost > 0 {
			time.Sleep(m.sim.bidCost) // what a real master's bid costs it; see Config.BidCost
		}
		return m.send(pipes.TypeBid, 0, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
	case pipes.TypeGrant:
		var g pipes.Grant
		if err := msg.Decode(&g); err != nil {
			return err
		}
		return m.start(&g)
	case pipes.TypeApprove:
		var a pipes.AllocRef
		if err := msg.Decode(&a); err != nil {
			return err
		}
		m.sim.ledger.approved(m.name, a.Alloc)
	case pipes.TypeStop:
		var s pipes.Stop
		if err := msg.Decode(&s); err != nil {
			return err
		}
		inst := m.sim.ledger.stopped(s.Alloc)
		return m.send(pipes.TypeExited, 0, &pipes.Exited{Alloc: s.Alloc, Instance: inst, Code: 0, Requested: true})
	case pipes.TypeError:
		if msg.Error != nil {
			return fmt.Errorf("the lanmanager answered %s: %s", msg.Error.Code, msg.Error.Message)
		}
	default:
		return fmt.Errorf("unexpected message")
	}
	return nil
}

// start answers a grant: the fake child is up, ready, and listening on
// ports of the pool.
func (m *simMaster) start(g *pipes.Grant) error {
	m.sim.ledger.granted(m.name, g.Alloc, g.Instance)
	var ports map[needs.Protocol]int
	if len(g.Need.Protocols) > 0 {
		ports = make(map[needs.Protocol]int, len(g.Need.Protocols))
		for _, p := range g.Need.Protocols {
			ports[p] = m.sim.ports.port()
		}
	}
	return m.send(pipes.TypeStarted, 0, &pipes.Started{Alloc: g.Alloc, Instance: g.Instance,
		PID: int(100000 + m.sim.pid.Add(1)), Address: "127.0.0.1", Ports: ports,
		StartedAt: time.Now().UTC(), Ready: true})
}

// ping pings every heartbeat while the master is neither silent nor closed.
func (m *simMaster) ping() {
	t := time.NewTicker(m.hb)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			if err := m.send(pipes.TypePing, 0, nil); err != nil {
				if !m.closing.Load() && !m.silent.Load() {
					m.sim.failures.add("master %s: %v", m.name, err)
				}
				return
			}
		}
	}
}

// cut cuts the master off: silent (no FIN) or by closing its link.
func (m *simMaster) cut(closeLink bool) {
	if closeLink {
		m.closing.Store(true)
		m.conn.Close()
		return
	}
	m.silent.Store(true)
}

// close ends the master: its goroutines stop and its link closes.
func (m *simMaster) close() {
	m.once.Do(func() {
		m.closing.Store(true)
		close(m.done)
		m.conn.Close()
	})
	m.wg.Wait()
}
