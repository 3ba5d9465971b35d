package lan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"berth/lifecycle"
	"berth/needs"
	"berth/pipes"
)

// session is one connected master. Outgoing messages go through a bounded
// queue drained by the server's link writers (lan/writers.go); a master
// that lets the queue fill up, or whose socket takes nothing for
// linkWriteTimeout, is disconnected rather than blocking the lanmanager.
type session struct {
	info needs.Master
	boot string // the master's boot nonce (pipes.Hello.Boot)
	// local is the IP address of ours the master connected to: where its
	// children reach the IPC hub when it listens on every address.
	local string
	// services is set when the master asked for the running set (and the
	// mesh frames); ingress is its last ingress report (Server.mu).
	services bool
	ingress  []needs.IngressPort
	conn     *pipes.Conn
	// The outgoing queue: a slice rather than a buffered channel, so that
	// an idle link holds no buffer (1,000 links × 4,096 slots were most of
	// the lanmanager's memory). scheduled: the session is in the writers'
	// ready list, held by a writer, or parked on the gate (lan/writers.go).
	qmu       sync.Mutex
	q         []outgoing
	scheduled bool
	writers   *linkWriters
	// gate and after order the frames: a frame waits until batch after-1
	// is written (0: it waits for nothing). after is the batch of the
	// last frame the core queued here plus one, so that frames queued
	// later wait behind it.
	gate  *commitGate
	after atomic.Uint64
	done  chan struct{}
	once  sync.Once
	log   *slog.Logger

	// lastSeen is when the last frame arrived (Config.Clock, with its
	// monotonic reading); written by the session's reader, read by the placer.
	lastSeen atomic.Pointer[time.Time]
	// lastPing is when the lanmanager last pinged the master. Guarded by Server.mu.
	lastPing time.Time
	// The loads the master sent in the current second (lan/loads.go);
	// touched by the session's dispatcher only.
	loadsWindow time.Time
	loadsTaken  int
	loadsWarned bool
}

const sessionQueue = 4096

// dispatchQueue bounds the frames read from a master and not yet
// dispatched; a master that sends faster waits in its TCP buffer.
const dispatchQueue = 1024

// dispatchSlots is how many masters' frames are dispatched at once: one.
// Dispatching takes Server.mu, so more at once only wait for it; and each
// waiting dispatcher is a goroutine in the scheduler's queues, ahead of an
// API request that comes next. At 1,000 simulated masters the queue held
// up to 500 goroutines in bursts. One per core (until stop 14) put the
// API's highest p99 at 33.6–51.1 ms over nine runs of bench/sim, one at
// a time with two link writers 31.6–44.6 ms over nine (docs/scale.md).
func dispatchSlots() int { return 1 }

// ref names the master for the core.
func (m *session) ref() lifecycle.MasterRef {
	return lifecycle.MasterRef{ID: m.info.ID, Name: m.info.Name, Address: m.info.Address}
}

// heard records that a frame arrived at t.
func (m *session) heard(t time.Time) { m.lastSeen.Store(&t) }

// seen is when the last frame arrived.
func (m *session) seen() time.Time { return *m.lastSeen.Load() }

// heartbeat is the ping interval masters are told to keep: a fifth of the
// TTL, at least 50 ms (but below the TTL).
func (s *Server) heartbeat() time.Duration {
	hb := s.cfg.MasterTTL / 5
	if hb < 50*time.Millisecond {
		hb = min(50*time.Millisecond, s.cfg.MasterTTL/2)
	}
	return hb
}

func (m *session) send(typ string, body any) {
	msg, err := pipes.New(typ, body)
	if err != nil {
		m.log.Error("encode", "type", typ, "err", err)
		return
	}
	m.sendMsg(msg)
}

// outgoing is a queued frame: a message, or a frame of the core encoded by
// the writer; it leaves once batch after-1 is written.
type outgoing struct {
	msg   *pipes.Msg
	preps []*pipes.Prepared // frames encoded once for many links, sent in a row
	frame lifecycle.Frame
	after uint64
	gen   uint64 // set by the core's frames: their batch
}

// sendMsg queues msg behind every frame queued before it.
func (m *session) sendMsg(msg *pipes.Msg) {
	m.queue(outgoing{msg: msg, after: m.after.Load()})
}

// sendPrepared queues frames encoded once for many sessions, in a row,
// behind every frame queued before them.
func (m *session) sendPrepared(preps []*pipes.Prepared) {
	if len(preps) > 0 {
		m.queue(outgoing{preps: preps, after: m.after.Load()})
	}
}

// gone reports whether the session is closed.
func (m *session) gone() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// queue adds o to the outgoing queue; a frame of the core (o.msg and
// o.preps nil) waits for its batch, and makes later frames wait for it too.
func (m *session) queue(o outgoing) {
	if o.msg == nil && o.preps == nil {
		o.after = o.gen + 1
		m.after.Store(o.after)
	}
	m.qmu.Lock()
	full := len(m.q) >= sessionQueue
	wake := false
	if !full {
		m.q = append(m.q, o)
		wake, m.scheduled = !m.scheduled, true
	}
	m.qmu.Unlock()
	if wake {
		m.writers.schedule(m)
	}
	if full {
		select {
		case <-m.done:
		default:
			m.log.Warn("master too slow: outgoing queue full, disconnecting")
			m.close()
		}
		return
	}
}

// take returns the queued frames, leaving the queue empty.
func (m *session) take() []outgoing {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	q := m.q
	m.q = nil
	return q
}

func (m *session) close() {
	m.once.Do(func() {
		close(m.done)
		m.conn.Close()
	})
}

// write sends what m has queued, for the writer holding m: what was
// queued since the last write leaves in one write (a WebSocket message
// holding several frames), except that frames queued before one that
// waits for a batch leave before the wait. A write that fails closes the
// session, whose queue is dropped from then on.
func (m *session) write(b *pipes.Batch) {
	if m.gone() {
		m.take() // scheduled stays set: a closed session is never listed again
		return
	}
	if err := b.Retarget(m.conn); err != nil {
		panic("lan: " + err.Error()) // every path below flushes or empties the batch
	}
	q := m.take()
	for i, o := range q {
		if o.after > 0 && !m.gate.written(o.after-1) {
			if err := b.Flush(); err != nil {
				m.fail(b, err)
				return
			}
			m.putBack(q[i:])
			if !m.gate.park(o.after-1, m) {
				m.writers.schedule(m) // written meanwhile
			}
			return
		}
		var err error
		if o.preps != nil {
			for _, p := range o.preps {
				if err = b.AddPrepared(p); err != nil {
					break
				}
			}
		} else {
			msg := o.msg
			if msg == nil {
				msg = frameMsg(o.frame, m.log)
			}
			if msg != nil {
				err = b.Add(msg)
			}
		}
		if err != nil {
			m.fail(b, err)
			return
		}
	}
	if err := b.Flush(); err != nil {
		m.fail(b, err)
		return
	}
	m.qmu.Lock()
	again := len(m.q) > 0
	m.scheduled = again
	m.qmu.Unlock()
	if again {
		m.writers.schedule(m)
	}
}

// fail closes m after a write failed, and empties b.
func (m *session) fail(b *pipes.Batch, err error) {
	if !m.gone() {
		m.log.Warn("link write failed: disconnecting", "err", err)
	}
	m.close()
	b.Reset()
	m.take()
}

// putBack returns frames taken and not sent to the head of the queue.
func (m *session) putBack(rest []outgoing) {
	m.qmu.Lock()
	m.q = append(slices.Clip(rest), m.q...)
	m.qmu.Unlock()
}

// localIP is the address of ours that r came in on, or "".
func localIP(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			return host
		}
	}
	return ""
}

// handleLink serves /v1/link, the WebSocket of a master.
func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, ErrClosed.Error())
		return
	}
	defer s.wg.Done()
	conn, err := pipes.AcceptWS(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetWriteTimeout(s.linkWriteTimeout())
	hello, err := readHello(s.ctx, conn)
	if err != nil {
		conn.SendError(0, err)
		return
	}
	now := s.now()
	m := &session{
		info: needs.Master{ID: hello.ID, Name: hello.Name, Address: hello.Address, Since: now.UTC(),
			Version: hello.Version, Ranges: hello.Ranges, Free: hello.Free, Drivers: driverStatuses(hello.Drivers)},
		boot: hello.Boot, local: localIP(r),
		conn: conn, writers: s.writers, done: make(chan struct{}), gate: &s.committed,
		log: s.log.With("master", hello.Name),
	}
	m.heard(now)
	m.lastPing = now
	if err := s.register(m, hello); err != nil {
		conn.SendError(0, err)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	// The reader marks the master heard as each frame arrives and hands it
	// to the dispatcher: a frame waiting for Server.mu never keeps the
	// next one (a ping) unread, so liveness counts what arrived, not what
	// was processed. Frames are dispatched in order, so a pong still says
	// that everything sent before its ping was handled.
	frames := make(chan *pipes.Msg, dispatchQueue)
	go func() {
		defer wg.Done()
		for msg := range frames {
			s.dispatching <- struct{}{}
			err := s.dispatch(m, msg)
			<-s.dispatching
			if err != nil {
				m.log.Warn("bad message from master", "type", msg.Type, "err", err)
				m.sendMsg(&pipes.Msg{V: pipes.Version, Type: pipes.TypeError, ID: msg.ID, Error: pipes.ErrorFrom(err)})
			}
		}
	}()
	stop := context.AfterFunc(s.ctx, m.close)
	defer stop()
read:
	for {
		msg, err := conn.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				select {
				case <-m.done:
				default:
					m.log.Info("link read", "err", err)
				}
			}
			break
		}
		m.heard(s.now())
		select {
		case frames <- msg:
		case <-m.done:
			break read
		}
	}
	close(frames)
	m.close()
	wg.Wait()
	s.unregister(m)
}

func readHello(ctx context.Context, conn *pipes.Conn) (*pipes.Hello, error) {
	type result struct {
		msg *pipes.Msg
		err error
	}
	ch := make(chan result, 1)
	go func() { msg, err := conn.Recv(); ch <- result{msg, err} }()
	var res result
	select {
	case res = <-ch:
	case <-time.After(10 * time.Second):
		conn.Close()
		<-ch
		return nil, errors.New("no hello within 10s")
	case <-ctx.Done():
		conn.Close()
		<-ch
		return nil, ErrClosed
	}
	if res.err != nil {
		return nil, res.err
	}
	if res.msg.Type != pipes.TypeHello {
		return nil, fmt.Errorf("%w: first message must be hello, got %q", needs.ErrInvalid, res.msg.Type)
	}
	var h pipes.Hello
	if err := res.msg.Decode(&h); err != nil {
		return nil, err
	}
	return &h, nil
}

// register admits a master and reconciles what it says it runs with what
// the lanmanager believes.
func (s *Server) register(m *session, h *pipes.Hello) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for id, o := range s.masters {
		if id != h.ID && o.info.Name == h.Name {
			err := fmt.Errorf("%w: master name %q is already used by connected master %s from %s", needs.ErrExists, h.Name, id, o.info.Address)
			s.logRefusedMasterLocked(h, err)
			return err
		}
	}
	if err := s.identityConflictLocked(h, s.now()); err != nil {
		s.logRefusedMasterLocked(h, err)
		return err
	}
	if old, ok := s.masters[h.ID]; ok {
		old.close() // the same master on a new link: the newer link wins
	}
	s.masters[h.ID] = m
	delete(s.gone, h.ID)
	m.send(pipes.TypeWelcome, &pipes.Welcome{HeartbeatMS: int(s.heartbeat() / time.Millisecond),
		TTLMS: int(s.cfg.MasterTTL / time.Millisecond), StopGraceMS: int(s.cfg.StopGrace / time.Millisecond), Loads: true})
	// The exits it could not send while the link was down, then what it
	// runs against what the records place on it.
	s.stepLocked(lifecycle.Reconnected{Master: m.ref(), Exits: h.Exits, Allocs: h.Allocs})
	if h.Services {
		m.services = true
		m.send(pipes.TypeMesh, s.meshLocked())
		s.svc.join(m) // its full set follows, from the services pusher
	}
	if h.Loads {
		s.loads.join(m) // the whole book follows, from the relay
	}
	info := m.info
	info.Connected, info.Draining, info.LastSeen = true, s.core.Draining(m.info.Name), m.seen().UTC()
	s.publishLocked(Event{Time: time.Now(), Kind: EventMasterUp, Master: &info})
	m.log.Info("master connected", "id", h.ID, "address", h.Address, "allocs", len(h.Allocs), "exits", len(h.Exits))
	s.kick()
	return nil
}

// logRefusedMasterLocked logs a refused hello at ERROR, at most once per
// master id and address every refusedLogInterval.
func (s *Server) logRefusedMasterLocked(h *pipes.Hello, err error) {
	if ok, held := s.refusals.allow("hello "+h.ID+" "+h.Address, time.Now()); ok {
		s.log.Error("master refused", "master", h.Name, "id", h.ID, "address", h.Address, "err", err, "refused_since_last_line", held)
	}
}

// identityConflictLocked refuses a hello that claims the id of a master
// still alive elsewhere: a copy of its runtime directory (a cloned VM
// image, a copied directory) rather than the same master reconnecting. The
// same process on a new link sends the same boot nonce and wins, as does a
// master restarted on the same machine under the same name, once its old
// link has been silent for two heartbeats. A hello with another boot nonce
// from another address or under another name is refused while the id was
// heard within the TTL, whether its link is up or just dropped.
func (s *Server) identityConflictLocked(h *pipes.Hello, now time.Time) error {
	var name, addr, boot string
	var seen time.Time
	connected := false
	if old, ok := s.masters[h.ID]; ok {
		name, addr, boot, seen, connected = old.info.Name, old.info.Address, old.boot, old.seen(), true
	} else if g, ok := s.gone[h.ID]; ok && g.heard {
		name, addr, boot, seen = g.name, g.address, g.boot, g.since
	}
	if boot == "" || h.Boot == boot || now.Sub(seen) >= s.cfg.MasterTTL {
		return nil
	}
	sameMachine := name == h.Name && addr == h.Address
	if sameMachine && (!connected || now.Sub(seen) >= 2*s.heartbeat()) {
		return nil
	}
	state := "connected"
	if !connected {
		state = fmt.Sprintf("was connected %s ago", now.Sub(seen).Round(time.Millisecond))
	}
	return fmt.Errorf("%w: master id %s is already %s as %s from %s (this one is %s from %s): "+
		"was the runtime directory copied? delete master.id in this master's runtime directory to get a new id",
		needs.ErrExists, h.ID, state, name, addr, h.Name, h.Address)
}

// unregister forgets a session whose link closed.
func (s *Server) unregister(m *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropSessionLocked(m, "link closed")
}

// dropSessionLocked forgets a session: its open rounds forget it and, unless
// the lanmanager is closing, the master counts as gone since it was last
// heard. Its instances stay placed until expireGoneLocked finds it lost.
func (s *Server) dropSessionLocked(m *session, why string) {
	if cur, ok := s.masters[m.info.ID]; !ok || cur != m {
		return // replaced by a newer link, or dropped already
	}
	delete(s.masters, m.info.ID)
	for name, r := range s.rounds {
		if r.asked[m.info.ID] {
			delete(r.asked, m.info.ID)
			delete(r.bids, m.info.ID)
			if len(r.asked) == 0 {
				delete(s.rounds, name)
			}
		}
	}
	seen := m.seen()
	if !s.closed {
		s.gone[m.info.ID] = masterGone{name: m.info.Name, since: seen, heard: true, address: m.info.Address, boot: m.boot}
	}
	info := m.info
	info.Draining, info.LastSeen = s.core.Draining(info.Name), seen.UTC()
	s.publishLocked(Event{Time: time.Now(), Kind: EventMasterDown, Master: &info, Message: why})
	m.log.Info("master disconnected", "why", why)
	s.kick()
}

// dispatch handles one message from a master.
func (s *Server) dispatch(m *session, msg *pipes.Msg) error {
	switch msg.Type {
	case pipes.TypePing:
		// After everything the frames before it changed is written (and
		// in the read API's view): a pong says that all came before it.
		m.queue(outgoing{msg: &pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID},
			after: max(m.after.Load(), s.pendingAfter())})
		return nil
	case pipes.TypePong, pipes.TypeStats:
		return nil
	case pipes.TypeBid:
		var b pipes.Bid
		if err := msg.Decode(&b); err != nil {
			return err
		}
		s.mu.Lock()
		s.bidLocked(m.info.ID, &b)
		s.mu.Unlock()
	case pipes.TypeStarted:
		var st pipes.Started
		if err := msg.Decode(&st); err != nil {
			return err
		}
		s.mu.Lock()
		s.stepLocked(lifecycle.Started{Master: m.ref(), Report: st})
		s.mu.Unlock()
	case pipes.TypeReady:
		var a pipes.AllocRef
		if err := msg.Decode(&a); err != nil {
			return err
		}
		s.readyFrom(m, a.Alloc)
	case pipes.TypeExited:
		var e pipes.Exited
		if err := msg.Decode(&e); err != nil {
			return err
		}
		s.mu.Lock()
		s.stepLocked(lifecycle.Exited{MasterID: m.info.ID, Report: e})
		s.mu.Unlock()
	case pipes.TypeLogData:
		return s.logData(m, msg)
	case pipes.TypeIngress:
		var r pipes.IngressReport
		if err := msg.Decode(&r); err != nil {
			return err
		}
		s.ingressFrom(m, &r)
	case pipes.TypeLoads:
		if !s.loadsRoom(m) {
			return nil // over the second's budget: dropped undecoded
		}
		var l pipes.Loads
		if err := msg.Decode(&l); err != nil {
			return err
		}
		s.loadsFrom(m, &l)
	case pipes.TypeError:
		if msg.Error != nil {
			if s.logError(m, msg) {
				return nil
			}
			m.log.Warn("master reports error", "err", msg.Error.Message)
		}
	default:
		return fmt.Errorf("%w: message type %q", pipes.ErrUnsupported, msg.Type)
	}
	return nil
}

// driverStatuses is what the lanmanager keeps of a hello's drivers.
func driverStatuses(ds []pipes.DriverInfo) []needs.DriverStatus {
	if len(ds) == 0 {
		return nil
	}
	out := make([]needs.DriverStatus, len(ds))
	for i, d := range ds {
		out[i] = needs.DriverStatus{Name: d.Name, Version: d.Version, Available: d.Available, Reason: d.Reason}
	}
	return out
}
