package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// Pacing of the open loop: a sender sleeps at least paceTick; a send more
// than lateBy behind its schedule counts as late (the sender did not get
// the CPU in time).
const (
	paceTick = 500 * time.Microsecond
	lateBy   = 2 * time.Millisecond
)

// load says how the senders of a phase send.
type load struct {
	// rate, in deliveries per second over all receivers, paces the
	// senders (open loop); 0 sends as fast as the window allows (closed
	// loop).
	rate float64
	// inflight bounds how far a sender may run ahead of its slowest
	// receiver, in messages, in both modes: under the hub's send queue
	// (256 frames), so that a sender never overruns a receiver.
	inflight int64
	warmup   time.Duration // load before the window, not measured
	window   time.Duration // the measured time
	maxMsgs  int64         // per sender, whatever the time
	drain    time.Duration // bound of the wait for the last messages
}

// phase is the state of one load on one bus. Receivers write only their
// own hist and the counters of (sender, themselves).
type phase struct {
	sc    *scenario
	clock clock
	// Messages stamped in [winStart, winEnd) have their hop latency
	// recorded; delivered messages are counted at winStart and winEnd.
	winStart, winEnd int64

	slot   [][]int          // slot[sender][peer]: index of peer in sc.dests[sender], or -1
	recv   [][]atomic.Int64 // recv[sender][slot]: messages of sender the peer received
	sent   []atomic.Int64   // per sender
	notify []chan struct{}  // per sender: a receiver advanced
	every  int64            // a receiver notifies its sender every this many messages
	hists  []*hist          // per receiving peer
	other  atomic.Int64     // frames that are not messages: hub notices
	order  atomic.Int64     // messages out of order or from outside the phase
	late   atomic.Int64     // paced sends more than 1 ms behind their schedule
	errMu  sync.Mutex       // Protects following.
	err    error            // the first error of a sender
}

func newPhase(sc *scenario, c clock, inflight int64) *phase {
	ph := &phase{sc: sc, clock: c, every: max(1, inflight/4),
		slot: make([][]int, sc.peers), recv: make([][]atomic.Int64, sc.peers), sent: make([]atomic.Int64, sc.peers),
		notify: make([]chan struct{}, sc.peers), hists: make([]*hist, sc.peers)}
	for s := range sc.peers {
		ph.slot[s] = make([]int, sc.peers)
		for p := range ph.slot[s] {
			ph.slot[s][p] = -1
		}
		for i, p := range sc.dests[s] {
			ph.slot[s][p] = i
		}
		ph.recv[s] = make([]atomic.Int64, len(sc.dests[s]))
		ph.notify[s] = make(chan struct{}, 1)
		ph.hists[s] = &hist{}
	}
	return ph
}

// receive handles a frame peer got: records the hop, counts it, and
// wakes its sender now and then.
func (ph *phase) receive(peer int, b []byte) {
	now := ph.clock.now()
	stamp, sender, seq, ok := parseMsg(b)
	if !ok {
		ph.other.Add(1)
		return
	}
	if sender >= ph.sc.peers || ph.slot[sender][peer] < 0 {
		ph.order.Add(1)
		return
	}
	if stamp >= ph.winStart && stamp < ph.winEnd {
		ph.hists[peer].record(now - stamp)
	}
	n := ph.recv[sender][ph.slot[sender][peer]].Add(1)
	if seq != n-1 {
		ph.order.Add(1)
	}
	if n%ph.every == 0 {
		select {
		case ph.notify[sender] <- struct{}{}:
		default:
		}
	}
}

// minRecv is how many messages of sender its slowest receiver got.
func (ph *phase) minRecv(sender int) int64 {
	m := int64(-1)
	for i := range ph.recv[sender] {
		if n := ph.recv[sender][i].Load(); m < 0 || n < m {
			m = n
		}
	}
	return m
}

func (ph *phase) delivered() int64 {
	var n int64
	for s := range ph.recv {
		for i := range ph.recv[s] {
			n += ph.recv[s][i].Load()
		}
	}
	return n
}

func (ph *phase) expected() int64 {
	var n int64
	for s := range ph.sent {
		n += ph.sent[s].Load() * int64(len(ph.sc.dests[s]))
	}
	return n
}

func (ph *phase) fail(err error) {
	ph.errMu.Lock()
	defer ph.errMu.Unlock()
	if ph.err == nil {
		ph.err = err
	}
}

// sendLoop sends from peer s from start until the window ends, maxMsgs
// sends or ctx ends. interval > 0 paces it; it always stays within
// inflight messages of its slowest receiver.
func (ph *phase) sendLoop(ctx context.Context, cs conns, s int, l load, start int64, interval float64) {
	buf := make([]byte, msgSize)
	next := float64(start)
	for seq := int64(0); seq < l.maxMsgs; seq++ {
		now := ph.clock.now()
		if now >= ph.winEnd || ctx.Err() != nil {
			return
		}
		if interval > 0 {
			// A sleep costs a timer and two goroutine switches: a sender
			// sleeps at least paceTick, then sends what fell due meanwhile
			// back to back, so that the pacing costs both buses little.
			if wait := int64(next) - now; wait > 0 {
				time.Sleep(time.Duration(max(wait, int64(paceTick))))
			} else if -wait > int64(lateBy) {
				ph.late.Add(1)
				if -wait > int64(10*time.Millisecond) {
					next = float64(now) // behind by more than 10 ms: do not burst to catch up
				}
			}
			next += interval
		}
		for seq-ph.minRecv(s) >= l.inflight {
			select {
			case <-ph.notify[s]:
			case <-ctx.Done():
				ph.fail(fmt.Errorf("peer %d: %d messages unanswered at the phase's end", s, seq-ph.minRecv(s)))
				return
			}
		}
		putMsg(buf, ph.clock.now(), s, seq)
		if err := cs.send(s, buf); err != nil {
			if ctx.Err() == nil {
				ph.fail(fmt.Errorf("peer %d: send: %w", s, err))
			}
			return
		}
		ph.sent[s].Add(1)
	}
}

// phaseResult is what one phase measured.
type phaseResult struct {
	delivered int64         // in the window
	elapsed   time.Duration // the window, as measured
	rate      float64       // delivered / elapsed
	lat       dist          // hops of the messages stamped in the window
	sent      int64         // messages sent, all of the phase
	expected  int64         // sent × destinations
	received  int64         // of those, received by the end of the drain
	other     int64
	order     int64
	late      int64
	cpu       time.Duration // CPU time of this process and, for NATS, of nats-server
}

func (r *phaseResult) lost() int64 { return r.expected - r.received }

// runPhase connects sc's peers on b, loads them with l and measures.
// cpu, if not nil, reads the CPU time spent so far by what runs the bus.
func runPhase(ctx context.Context, b bus, sc *scenario, l load, c clock, cpu func() time.Duration) (*phaseResult, error) {
	ph := newPhase(sc, c, l.inflight)
	cs, err := b.open(ctx, sc, ph.receive)
	if err != nil {
		return nil, fmt.Errorf("%s %s: connect: %w", b.name(), sc.name, err)
	}
	defer cs.close()

	start := c.now() + int64(20*time.Millisecond)
	ph.winStart = start + int64(l.warmup)
	ph.winEnd = ph.winStart + int64(l.window)
	// The phase ends, whatever happens, a drain after the window: then the
	// connections are cut, which unblocks any send.
	pctx, cancel := context.WithDeadline(ctx, c.base.Add(time.Duration(ph.winEnd)+l.drain))
	defer cancel()
	stop := context.AfterFunc(pctx, cs.close)
	defer stop()

	senders := sc.senders()
	var interval float64 // ns between two sends of one sender
	if l.rate > 0 {
		interval = float64(time.Second) * float64(len(senders)*sc.fanOut()) / l.rate
	}
	var wg sync.WaitGroup
	labels := pprof.Labels("side", "client")
	for _, s := range senders {
		wg.Go(func() {
			pprof.Do(pctx, labels, func(ctx context.Context) { ph.sendLoop(ctx, cs, s, l, start, interval) })
		})
	}

	r := &phaseResult{}
	sleepUntil(pctx, c, ph.winStart)
	d0, t0, cpu0 := ph.delivered(), c.now(), readCPU(cpu)
	sleepUntil(pctx, c, ph.winEnd)
	d1, t1, cpu1 := ph.delivered(), c.now(), readCPU(cpu)
	wg.Wait()
	for pctx.Err() == nil && ph.delivered() < ph.expected() {
		time.Sleep(5 * time.Millisecond)
	}
	r.received, r.expected = ph.delivered(), ph.expected()
	cs.close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.delivered, r.elapsed, r.cpu = d1-d0, time.Duration(t1-t0), cpu1-cpu0
	r.rate = float64(r.delivered) / r.elapsed.Seconds()
	var h hist
	for _, ph := range ph.hists {
		h.merge(ph)
	}
	r.lat = h.dist()
	for s := range ph.sent {
		r.sent += ph.sent[s].Load()
	}
	r.other, r.order, r.late = ph.other.Load(), ph.order.Load(), ph.late.Load()
	ph.errMu.Lock()
	err = ph.err
	ph.errMu.Unlock()
	if err != nil {
		return r, fmt.Errorf("%s %s: %w", b.name(), sc.name, err)
	}
	if r.lost() != 0 {
		return r, fmt.Errorf("%s %s: %d of %d deliveries missing %s after the window", b.name(), sc.name, r.lost(), r.expected, l.drain)
	}
	return r, nil
}

func readCPU(cpu func() time.Duration) time.Duration {
	if cpu == nil {
		return 0
	}
	return cpu()
}

// sleepUntil sleeps until the clock reads t or ctx ends.
func sleepUntil(ctx context.Context, c clock, t int64) {
	d := time.Duration(t - c.now())
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

var errNoNATS = errors.New("no NATS server: pass -nats URL (bench/ipc.sh starts one)")
