package lan

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"berth/lifecycle"
	"berth/needs"
	"berth/pipes"
)

// The lanmanager applies every event to its core (package lifecycle) under
// Server.mu, and hands the effects on at once (applyLocked): port checks
// and minimum-uptime waits start, retries are scheduled, frames join their
// master's outgoing queue. What must be durable first waits in a batch for
// the committer: the records the events changed, and the events that
// show them. The committer takes the whole batch, writes its records in
// one bbolt transaction (one fsync, however many events) without the lock,
// and only then publishes its events and lets the masters' writers send
// the frames queued with it (see session.writer): a grant never leaves
// before its record is on disk. Events that arrive during the write go
// into the next batch.
//
// A link's frames leave in the order they were queued: a frame queued
// without the core (a pong, an offer) waits behind the frames queued
// before it for the same master.

// batch is what applied effects wait for the committer with.
type batch struct {
	records map[string]*needs.Instance // the records to write, as last changed; nil: delete
	events  []Event                    // to publish once written, in order
	frames  bool                       // frames wait for this batch
}

func (b *batch) empty() bool { return len(b.records) == 0 && len(b.events) == 0 && !b.frames }

// stepLocked applies one event to the core, now, and its effects.
func (s *Server) stepLocked(ev lifecycle.Event) {
	s.core.Step(&s.fx, s.now(), ev)
	s.applyLocked()
}

// publishStepLocked publishes e and steps ev so that e and what ev changes
// go out in one batch, e first: a client that sees e then reads a state
// with those changes. (Published apart, the committer could write e alone
// first: a test that saw master.lost read the instance still on the lost
// master.)
func (s *Server) publishStepLocked(e Event, ev lifecycle.Event) {
	s.lead = append(s.lead, e)
	s.stepLocked(ev)
	for _, e := range s.lead { // the step changed nothing
		s.publishLocked(e)
	}
	s.lead = nil
}

// applyLocked hands on the effects collected in s.fx: what needs no
// durability happens now, the rest joins the batch for the committer.
func (s *Server) applyLocked() {
	fx := &s.fx
	if fx.Empty() {
		return
	}
	for _, in := range fx.Removed {
		delete(s.rounds, in.Name)
		delete(s.retryAt, in.Name)
	}
	s.batchLocked(fx)
	for _, c := range fx.Checks {
		if s.closed {
			continue
		}
		s.wg.Go(func() { s.approve(c) })
	}
	for _, alloc := range fx.Uptime {
		s.uptimeAt[alloc] = time.Now().Add(s.cfg.MinUptime)
	}
	if fx.ClearRetries {
		clear(s.retryAt)
	}
	for name, at := range fx.Retry {
		s.retryAt[name] = at
	}
	for _, h := range fx.Handoffs {
		if h.Moved {
			s.moveDoneLocked(h.Instance, h.FromID, h.FromName)
		} else {
			s.giveUpMoveLocked(h.Instance, h.Why)
		}
	}
	for _, l := range fx.Logs {
		s.log.Info(l.Msg, l.Args...)
	}
	if fx.Wake || len(fx.Uptime) > 0 {
		s.kick()
	}
	fx.Reset()
}

// batchLocked adds to the pending batch the records, events and frames of
// fx, and wakes the committer.
func (s *Server) batchLocked(fx *lifecycle.Effects) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	b := &s.pending
	if b.records == nil {
		b.records = map[string]*needs.Instance{}
	}
	b.events = append(b.events, s.lead...) // see publishStepLocked
	s.lead = nil
	now := time.Now()
	for _, in := range fx.Removed {
		b.events = append(b.events, Event{Time: now, Kind: EventInstanceRemoved, Need: in.Need, Instance: in})
	}
	for name, put := range fx.Records {
		in := s.core.Insts[name]
		if !put || in == nil {
			b.records[name] = nil
			continue
		}
		c := in.Clone()
		b.records[name] = c
		b.events = append(b.events, Event{Time: now, Kind: EventInstance, Need: c.Need, Instance: c})
	}
	for name := range fx.Emit {
		if in := s.core.Insts[name]; in != nil && !fx.Records[name] {
			c := in.Clone()
			b.events = append(b.events, Event{Time: now, Kind: EventInstance, Need: c.Need, Instance: c})
		}
	}
	for _, f := range fx.Frames {
		if m, ok := s.masters[f.MasterID]; ok {
			if g, ok := f.Body.(*pipes.Grant); ok {
				s.grantEnv(m, g)
			}
			m.queue(outgoing{frame: f, gen: s.gen})
			b.frames = true
		}
	}
	s.wakeCommitterLocked()
}

// publishLocked publishes e after what the events before it changed is
// written (and in the read API's view): events reach subscribers in the
// order they happened, and a client that saw one reads a state at least
// that new.
func (s *Server) publishLocked(e Event) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.pending.events = append(s.pending.events, e)
	s.wakeCommitterLocked()
}

// wakeCommitterLocked wakes the committer if the pending batch holds
// anything; s.bmu held.
func (s *Server) wakeCommitterLocked() {
	if !s.pending.empty() {
		select {
		case s.commits <- struct{}{}:
		default:
		}
	}
}

// committer writes batches as they come, until the server closes; Close
// writes the last one. After a failed write it waits, 100 ms doubling to
// 5 s, before it tries again.
//
// While an API call is in persist, the committer writes nothing: the call
// writes the pending batch with its change, in one fsync, and wakes the
// committer when it is done. Without that, an API write waited for
// however many batches the committer took before it got writeMu (the
// committer, already running, takes the lock again before the woken
// call does): at 1,000 simulated masters it wrote 26,000 batches of one
// record median in 47 s, holding writeMu half the time, and an API write
// waited 25 ms for it at p99.
func (s *Server) committer() {
	retryLoop(s.ctx.Done(), s.commits, 100*time.Millisecond, 5*time.Second, func() bool {
		if s.apiWriters.Load() > 0 {
			s.leftToAPI.Add(1)
			return true
		}
		return s.flush() == nil
	})
}

// retryLoop runs try each time wake has a token, until done is closed.
// After a try that fails it waits first, doubling to limit, before it
// tries again, with or without a token (tokens that come meanwhile are
// taken and dropped: the retry covers them).
func retryLoop(done <-chan struct{}, wake <-chan struct{}, first, limit time.Duration, try func() bool) {
	var backoff time.Duration
	for {
		var retry <-chan time.Time
		if backoff > 0 {
			retry = time.After(backoff)
		}
		select {
		case <-done:
			return
		case <-wake:
			if backoff > 0 {
				continue // the retry comes when the back-off is over
			}
		case <-retry:
		}
		if try() {
			backoff = 0
		} else {
			backoff = min(max(2*backoff, first), limit)
		}
	}
}

// flush writes the pending batch, publishes its events and releases the
// frames queued with it.
func (s *Server) flush() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.flushHeld()
}

// flushHeld is flush with writeMu held. A batch whose write fails goes
// back to the pending batch, its frames and events held until it is
// written: a master is never told of a placement the disk does not hold.
func (s *Server) flushHeld() error {
	b, gen := s.takeBatch()
	if b.empty() {
		return nil
	}
	if err := s.store.Apply(b.change(nil)); err != nil {
		s.writeFailed(b, err)
		return err
	}
	s.done(b, gen)
	return nil
}

// writeFailed logs a failed write of batch b and puts it back: its
// records under the newer ones changed since, its events before theirs.
// Its frames wait for the pending batch's number now, which is written
// with it (commitGate releases every batch up to the one written).
func (s *Server) writeFailed(b batch, err error) {
	s.writeFailures.Add(1)
	if ok, held := s.refusals.allow("persist", time.Now()); ok {
		s.log.Error("persist instances; retrying", "instances", len(b.records), "err", err, "failed_since_last_line", held)
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	later := s.pending
	if later.records == nil {
		later.records = map[string]*needs.Instance{}
	}
	for name, in := range b.records {
		if _, newer := later.records[name]; !newer {
			later.records[name] = in
		}
	}
	later.events = append(b.events, later.events...)
	later.frames = true
	s.pending = later
	select { // the committer retries, after its back-off
	case s.commits <- struct{}{}:
	default:
	}
}

// heldFlushRecords is the size of pending batch above which persist
// writes it first, without Server.mu, so that the write under the lock
// stays small. Below it the batch goes with the change: one fsync instead
// of two (the batch usually holds a few records).
const heldFlushRecords = 256

// pendingRecords is how many records the pending batch holds.
func (s *Server) pendingRecords() int {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	return len(s.pending.records)
}

// wakeCommitter wakes the committer if the pending batch holds anything.
func (s *Server) wakeCommitter() {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.wakeCommitterLocked()
}

// pendingAfter is what a frame waits for to follow everything applied so
// far: the pending batch's number plus one, or 0 if it is empty.
func (s *Server) pendingAfter() uint64 {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.pending.empty() {
		return 0
	}
	return s.gen + 1
}

// takeBatch takes the pending batch and its number, leaving an empty one.
func (s *Server) takeBatch() (batch, uint64) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.pending.empty() {
		return batch{}, 0 // nothing shared with the pending batch
	}
	b, gen := s.pending, s.gen
	s.pending = batch{}
	s.gen++
	return b, gen
}

// change is the transaction that writes b and then extra (which wins
// where both write the same record).
func (b *batch) change(extra *Change) *Change {
	ch := &Change{}
	if extra != nil {
		*ch = *extra
	}
	mine := map[string]bool{}
	for _, in := range ch.PutInstances {
		mine[in.Name] = true
	}
	for _, name := range ch.DeleteInstances {
		mine[name] = true
	}
	var puts []*needs.Instance
	var dels []string
	for name, in := range b.records {
		switch {
		case mine[name]:
		case in != nil:
			puts = append(puts, in)
		default:
			dels = append(dels, name)
		}
	}
	ch.PutInstances = append(puts, ch.PutInstances...)
	ch.DeleteInstances = append(dels, ch.DeleteInstances...)
	return ch
}

// done publishes a written batch's events and lets its frames go.
func (s *Server) done(b batch, gen uint64) {
	s.view.written(b.records)
	s.svc.touch(slices.Collect(maps.Keys(b.records)), nil)
	for _, e := range b.events {
		s.hub.publish(e)
	}
	s.committed.release(gen)
}

// commitGate holds the masters' frames until their batch is written.
type commitGate struct {
	mu     sync.Mutex
	done   uint64     // batches up to done-1 are written
	parked []*session // sessions waiting for the next batch
	// resume puts parked sessions back in the writers' ready list.
	resume func(...*session)
}

func (g *commitGate) release(upTo uint64) {
	g.mu.Lock()
	if upTo+1 > g.done {
		g.done = upTo + 1
	}
	parked := g.parked
	g.parked = nil
	g.mu.Unlock()
	if len(parked) > 0 {
		g.resume(parked...)
	}
}

// written reports whether batch gen is written.
func (g *commitGate) written(gen uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gen < g.done
}

// park holds m until the batch after the last written one is, and reports
// true; or false, holding nothing, when batch gen is written by now. A
// parked session belongs to the gate: its writer must not touch it again.
func (g *commitGate) park(gen uint64, m *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gen < g.done {
		return false
	}
	g.parked = append(g.parked, m)
	return true
}

// persist runs an API call that must be durable before it answers. Under
// Server.mu, plan computes the change from the core; it is written in one
// transaction with the pending batch (what the events changed meanwhile,
// older than the change), and applied to the core only if the write
// succeeded; answer runs under the lock once it is. A failed write
// changes nothing of the core; the batch is then written alone, as the
// committer would have. The fsync runs under Server.mu: API writes are
// rare, and the batch taken under the lock can hold nothing newer than
// the change. A pending batch of more than heldFlushRecords is written
// first, without the lock.
func (s *Server) persist(plan func(now time.Time) (*Change, error), answer func()) error {
	s.apiWriters.Add(1)
	defer s.wakeCommitter() // for what came after this call's write
	defer s.apiWriters.Add(-1)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.pendingRecords() > heldFlushRecords {
		_ = s.flushHeld() // the bulk of the pending batch, without the lock; if it fails, it is written with the change or kept
	}
	planned, err := s.persistLocked(plan, answer)
	if !planned {
		// The committer left the pending batch to this call, which wrote
		// nothing: write it now, so that a stream of API calls that fail
		// (each one keeping the committer off) cannot hold it back.
		_ = s.flushHeld()
	}
	return err
}

// persistLocked is persist's part under Server.mu. planned is false when
// plan failed, and nothing was written.
func (s *Server) persistLocked(plan func(now time.Time) (*Change, error), answer func()) (planned bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true, ErrClosed // Close writes the last batch
	}
	ch, err := plan(s.now())
	if err != nil {
		return false, err
	}
	b, gen := s.takeBatch()
	if err := s.store.Apply(b.change(ch)); err != nil {
		if !b.empty() {
			// The batch alone, as the committer would have written it.
			if err := s.store.Apply(b.change(nil)); err != nil {
				s.writeFailed(b, err)
			} else {
				s.done(b, gen)
			}
		}
		return true, err
	}
	if !b.empty() {
		s.done(b, gen)
	}
	s.view.changed(ch)
	s.svc.touch(changedInstances(ch), append(slices.Clone(ch.DeleteNeeds), upstreamTargets(ch.PutNeeds)...))
	s.stepLocked(lifecycle.Committed{Change: ch})
	s.meshChangedLocked(ch.PutNeeds, ch.DeleteNeeds)
	if answer != nil {
		answer()
	}
	return true, nil
}

// changedInstances names the instances a change writes or deletes.
func changedInstances(ch *Change) []string {
	names := slices.Clone(ch.DeleteInstances)
	for _, in := range ch.PutInstances {
		names = append(names, in.Name)
	}
	return names
}

// approve checks a child with ports from the lanmanager's own host: every
// declared port must accept a TCP connection before StartDeadline.
func (s *Server) approve(c lifecycle.Check) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartDeadline)
	err := checkPorts(ctx, s.appr.slots, c.Address, c.Protocols, c.Ports)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	ev := lifecycle.Checked{Instance: c.Instance, Alloc: c.Alloc}
	if err != nil {
		ev.Err = err.Error()
	}
	s.stepLocked(ev)
}

// frameMsg encodes a frame of the core; nil (logged) if it cannot be.
func frameMsg(f lifecycle.Frame, log *slog.Logger) *pipes.Msg {
	if f.Err != nil {
		return &pipes.Msg{V: pipes.Version, Type: pipes.TypeError, Error: pipes.ErrorFrom(f.Err)}
	}
	msg, err := pipes.New(f.Type, f.Body)
	if err != nil {
		log.Error("encode", "type", f.Type, "err", err)
		return nil
	}
	return msg
}
