package lan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"berth/needs"
	"berth/pipes"
)

// session is one connected master. Outgoing messages go through a bounded
// queue drained by the session's writer; a master that lets the queue fill
// up is disconnected rather than blocking the lanmanager.
type session struct {
	info needs.Master
	conn *pipes.Conn
	out  chan *pipes.Msg
	done chan struct{}
	once sync.Once
	log  *slog.Logger
}

const sessionQueue = 4096

// HeartbeatInterval is how often masters ping the lanmanager.
const HeartbeatInterval = time.Second

func (m *session) send(typ string, body any) {
	msg, err := pipes.New(typ, body)
	if err != nil {
		m.log.Error("encode", "type", typ, "err", err)
		return
	}
	m.sendMsg(msg)
}

func (m *session) sendMsg(msg *pipes.Msg) {
	select {
	case m.out <- msg:
	case <-m.done:
	default:
		m.log.Warn("master too slow: outgoing queue full, disconnecting")
		m.close()
	}
}

func (m *session) close() {
	m.once.Do(func() {
		close(m.done)
		m.conn.Close()
	})
}

func (m *session) writer() {
	for {
		select {
		case <-m.done:
			return
		case msg := <-m.out:
			if err := m.conn.Send(msg); err != nil {
				m.close()
				return
			}
		}
	}
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
	hello, err := readHello(s.ctx, conn)
	if err != nil {
		conn.SendError(0, err)
		return
	}
	m := &session{
		info: needs.Master{ID: hello.ID, Name: hello.Name, Address: hello.Address, Since: time.Now().UTC(),
			Version: hello.Version, Ranges: hello.Ranges, Free: hello.Free},
		conn: conn, out: make(chan *pipes.Msg, sessionQueue), done: make(chan struct{}),
		log: s.log.With("master", hello.Name),
	}
	if err := s.register(m, hello); err != nil {
		conn.SendError(0, err)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.writer() }()
	stop := context.AfterFunc(s.ctx, m.close)
	defer stop()
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
		if err := s.dispatch(m, msg); err != nil {
			m.log.Warn("bad message from master", "type", msg.Type, "err", err)
			m.sendMsg(&pipes.Msg{V: pipes.Version, Type: pipes.TypeError, ID: msg.ID, Error: pipes.ErrorFrom(err)})
		}
	}
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
			return fmt.Errorf("%w: master name %q is already used by connected master %s", needs.ErrExists, h.Name, id)
		}
	}
	if old, ok := s.masters[h.ID]; ok {
		old.close() // the newer link wins
	}
	s.masters[h.ID] = m
	delete(s.gone, h.ID)
	clear(s.retryAt) // new capacity: offer everything again
	m.send(pipes.TypeWelcome, &pipes.Welcome{HeartbeatMS: int(HeartbeatInterval / time.Millisecond)})
	for i := range h.Exits {
		s.exitedLocked(m, &h.Exits[i]) // exits the master could not send while the link was down
	}
	s.reconcileLocked(m, h.Allocs)
	info := m.info
	s.hub.publish(Event{Time: time.Now(), Kind: EventMasterUp, Master: &info})
	m.log.Info("master connected", "id", h.ID, "address", h.Address, "allocs", len(h.Allocs))
	s.kick()
	return nil
}

// reconcileLocked compares a master's running allocations with the records.
// Current ones are kept (and checked again if not yet approved), stale or
// unknown ones are stopped, and placements the master no longer has are
// placed again.
func (s *Server) reconcileLocked(m *session, allocs []pipes.Started) {
	has := map[string]bool{}
	byAlloc := map[string]*needs.Instance{}
	for _, in := range s.insts {
		if in.Alloc != "" {
			byAlloc[in.Alloc] = in
		}
	}
	for i := range allocs {
		a := &allocs[i]
		in, ok := byAlloc[a.Alloc]
		if !ok || in.MasterID != m.info.ID {
			m.send(pipes.TypeStop, &pipes.Stop{Alloc: a.Alloc, Reason: "allocation unknown to the lanmanager"})
			continue
		}
		has[a.Alloc] = true
		switch {
		case in.State == needs.Stopping:
			m.send(pipes.TypeStop, &pipes.Stop{Alloc: a.Alloc, Reason: in.Reason, GraceMS: int(s.cfg.StopGrace / time.Millisecond)})
		case in.State == needs.Running && in.PID == a.PID:
			// Unchanged; approve again in case the first approval was lost.
			m.send(pipes.TypeApprove, &pipes.AllocRef{Alloc: a.Alloc})
		default:
			s.startedLocked(m, a)
		}
	}
	var lost []*needs.Instance
	for _, in := range s.insts {
		if in.MasterID == m.info.ID && in.State.Placed() && !has[in.Alloc] {
			lost = append(lost, in)
		}
	}
	for _, in := range lost {
		if in.Removing {
			s.dropLocked(in)
			continue
		}
		in.Unplace()
		in.State, in.Since = needs.Pending, time.Now().UTC()
		in.Reason = fmt.Sprintf("master %s no longer runs it", m.info.Name)
		s.saveLocked(in)
	}
}

func (s *Server) unregister(m *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.masters[m.info.ID]; !ok || cur != m {
		return // replaced by a newer link
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
	if !s.closed {
		s.gone[m.info.ID] = masterGone{name: m.info.Name, since: time.Now()}
	}
	info := m.info
	s.hub.publish(Event{Time: time.Now(), Kind: EventMasterDown, Master: &info})
	m.log.Info("master disconnected")
	s.kick()
}

// dispatch handles one message from a master.
func (s *Server) dispatch(m *session, msg *pipes.Msg) error {
	switch msg.Type {
	case pipes.TypePing:
		m.sendMsg(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID})
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
		s.startedLocked(m, &st)
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
		s.exitedLocked(m, &e)
		s.mu.Unlock()
	case pipes.TypeLogData:
		return s.logData(m, msg)
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
