package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/needs"
	"berth/pipes"
	"berth/spawn"
)

// report sends an exit on the current link: it queues it on the link's
// outbox (outbox.go), under a.mu so that the exit is either queued on the
// link or kept for the next hello, never both nor neither. An exit that
// cannot be queued, or is queued but never written because the link went
// down first, is kept (up to maxUnsent) and carried by the next hello, so
// the lanmanager counts the failure even if the link was down when the
// child died. Nothing here writes to the network.
func (a *Agent) report(e *pipes.Exited) {
	m, err := pipes.New(pipes.TypeExited, e)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil && a.link != nil && a.link.push(m, []pipes.Exited{*e}) {
		return
	}
	a.keepUnsentLocked(e)
}

// keepUnsentLocked keeps an exit for the next hello.
func (a *Agent) keepUnsentLocked(e *pipes.Exited) {
	if len(a.unsent) < maxUnsent {
		a.unsent = append(a.unsent, *e)
	}
}

const maxUnsent = 1000

// send queues a message on the current link, if there is one. Messages
// lost while the link is down are recovered by the hello that follows the
// reconnection, which lists every child the master runs.
func (a *Agent) send(typ string, body any) {
	m, err := pipes.New(typ, body)
	if err != nil {
		a.log.Error("send", "type", typ, "err", err)
		return
	}
	a.mu.Lock()
	ob := a.link
	a.mu.Unlock()
	if ob != nil && !ob.push(m, nil) {
		a.log.Debug("send: link going down", "type", typ)
	}
}

// Linked reports whether the master is connected to the lanmanager.
func (a *Agent) Linked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.linked
}

// setLinkedLocked publishes the link's outbox (nil when down) and wakes the
// loops that watch it.
func (a *Agent) setLinkedLocked(ob *outbox) {
	a.link, a.linked = ob, ob != nil
	if ob != nil {
		a.linkUps++
	}
	select {
	case a.linkEvents <- struct{}{}:
	default:
	}
}

// linkLoop keeps a link to the lanmanager, reconnecting with a back-off
// that grows from 100 ms to 2 s, plus up to half as much jitter, so that a
// master is back well within the lanmanager's 5 s TTL. Children keep
// running while the link is down (see disconnectLoop for the limit).
func (a *Agent) linkLoop() {
	delay := 100 * time.Millisecond
	var out outage
	for a.ctx.Err() == nil {
		began := time.Now()
		err := a.linkOnce()
		if a.ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*time.Second {
			delay = 100 * time.Millisecond
		}
		wait, next := delay, min(delay*2, 2*time.Second)
		if refused := (*refusedError)(nil); errors.As(err, &refused) {
			// Refused for who it is: asking again at once cannot help, so
			// say it loudly and ask again rarely.
			wait, next = refusedDelay, delay
			a.log.Error("the lanmanager refused this master; it will ask again later", "err", refused.err, "in", wait)
		} else {
			a.mu.Lock()
			ups := a.linkUps
			a.mu.Unlock()
			out.failed(a.log, ups, err, delay)
		}
		jitter := time.Duration(rand.Int64N(int64(wait)/2 + 1))
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(wait + jitter):
		}
		delay = next
	}
}

// unreachableWarn is how long the lanmanager may stay unreachable before a
// master says so at WARN; the next lines come after twice the time the
// outage has lasted, at most every unreachableWarnMax.
var unreachableWarn, unreachableWarnMax = 10 * time.Second, 5 * time.Minute

// outage logs the failed attempts to reach the lanmanager: the first of an
// outage at INFO (a lanmanager restart looks like this), then a WARN line
// with the attempts so far once the outage lasted unreachableWarn, 2×,
// 4× as long (at most every unreachableWarnMax), and the rest at DEBUG, so
// that a lanmanager down for hours leaves a few dozen lines, not one every
// 2 s. A link that came up in between starts a new outage.
type outage struct {
	ups      uint64 // the agent's link-up count when this outage began
	since    time.Time
	attempts int
	next     time.Duration // the outage's age at which the next WARN line is due
}

func (o *outage) failed(log *slog.Logger, ups uint64, err error, retry time.Duration) {
	if o.attempts == 0 || ups != o.ups {
		*o = outage{ups: ups, since: time.Now(), next: unreachableWarn}
	}
	o.attempts++
	age := time.Since(o.since)
	switch {
	case o.attempts == 1:
		log.Info("lanmanager link down; reconnecting", "err", err, "in", retry)
	case age >= o.next:
		log.Warn("lanmanager unreachable; still trying", "err", err, "down_for", age.Round(time.Second), "attempts", o.attempts, "every", retry)
		o.next = min(2*age, age+unreachableWarnMax)
	default:
		log.Debug("lanmanager link down; reconnecting", "err", err, "in", retry, "attempts", o.attempts)
	}
}

// refusedDelay is how long a master waits before it asks again after the
// lanmanager refused it for who it is (its token, its name or its id): long
// enough not to flood the lanmanager or the logs, short enough to come back
// by itself once the operator fixed it.
var refusedDelay = 30 * time.Second

// refusedError is a link the lanmanager refused: a wrong token, or a hello
// answered with an error (a name or id already in use).
type refusedError struct{ err error }

func (e *refusedError) Error() string { return "refused by the lanmanager: " + e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// disconnectLoop stops every child once the master has had no link to the
// lanmanager for limit (config key stopafterdisconnect), counting from the
// start or from the last time the link went down; their exits go in the
// next hello. It stops them once per link outage.
func (a *Agent) disconnectLoop(limit time.Duration) {
	var timer *time.Timer
	var fire <-chan time.Time
	var armedAt, firedAt uint64 = 0, ^uint64(0) // link generations (Agent.linkUps)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		a.mu.Lock()
		linked, ups := a.linked, a.linkUps
		a.mu.Unlock()
		switch {
		case linked && fire != nil:
			timer.Stop()
			fire = nil
		case !linked && firedAt != ups && (fire == nil || armedAt != ups):
			if timer != nil {
				timer.Stop()
			}
			timer = time.NewTimer(limit)
			fire, armedAt = timer.C, ups
		}
		select {
		case <-a.ctx.Done():
			return
		case <-a.linkEvents:
		case <-fire:
			fire, firedAt = nil, armedAt
			a.stopAll("no link to the lanmanager for "+limit.String()+" (stopafterdisconnect)", a.opts.StopGrace)
		}
	}
}

// stopAll stops every child; it returns at once.
func (a *Agent) stopAll(why string, grace time.Duration) {
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	if len(kids) > 0 {
		a.log.Warn("stopping every child", "count", len(kids), "reason", why)
	}
	for _, c := range kids {
		c.stop(a, why, grace)
	}
}

// linkOnce dials the lanmanager, says hello and serves the link until it
// fails, the lanmanager stays silent for its TTL (see watchLink), or the
// Agent closes.
func (a *Agent) linkOnce() error {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	conn, err := pipes.DialWS(ctx, a.linkURL, a.cfg.Token)
	cancel()
	if errors.Is(err, needs.ErrUnauthorized) {
		return &refusedError{err}
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	// The hello is built, queued first and the link published under one
	// lock, so a child is either in the hello or its reports are queued on
	// this link after it. The exits it carries go back to a.unsent if it
	// is never written.
	ob := newOutbox(conn)
	a.mu.Lock()
	h := a.helloLocked()
	if !ob.pushBody(pipes.TypeHello, 0, h, h.Exits) {
		a.mu.Unlock()
		return errors.New("hello: cannot encode")
	}
	a.unsent = nil
	a.setLinkedLocked(ob)
	a.mu.Unlock()
	lv := newLiveness()
	welcomed := false
	var services gather // this link's services revisions
	meshed := false     // a mesh frame came on this link
	sharing := false    // shareLoads runs for this link
	var wg sync.WaitGroup
	defer func() {
		// Once the writer has stopped, what it did not write is no longer
		// anyone's: the link is unpublished and the exits it held are kept
		// for the next hello, in one step under a.mu.
		conn.Close()
		wg.Wait()
		a.mu.Lock()
		if a.link == ob {
			a.setLinkedLocked(nil)
		}
		for _, e := range ob.drain() {
			a.keepUnsentLocked(&e)
		}
		a.mu.Unlock()
	}()
	wg.Go(ob.run)
	wg.Go(func() { a.watchLink(ob, lv, &wg) })
	stop := context.AfterFunc(a.ctx, func() { conn.Close() })
	defer stop()
	for {
		msg, err := conn.Recv()
		if err != nil {
			if silent := lv.silentErr(); silent != nil {
				return silent
			}
			return err
		}
		lv.heard()
		if msg.Type == pipes.TypeError && !welcomed && msg.Error != nil {
			return &refusedError{msg.Error} // the answer to the hello
		}
		if msg.Type == pipes.TypeWelcome {
			welcomed = true
			var w pipes.Welcome
			if err := msg.Decode(&w); err != nil {
				a.log.Warn("bad welcome from lanmanager; using default heartbeat and TTL", "err", err)
				w = pipes.Welcome{}
			}
			a.lanGrace.Store(int64(w.StopGraceMS) * int64(time.Millisecond))
			lv.welcomed(w)
			if w.Loads && !sharing {
				sharing = true
				wg.Go(func() { a.shareLoads(ob) })
			}
			continue
		}
		if msg.Type == pipes.TypeServices {
			if err := services.receive(a.mirror, msg); err != nil {
				a.log.Warn("bad services from lanmanager", "err", err)
				if errors.Is(err, errOutOfStep) {
					// Said before the link goes (the queue is not
					// flushed); the next link starts with a full set.
					conn.SendError(msg.ID, err)
					return err
				}
				ob.pushError(msg.ID, err)
			}
			continue
		}
		if msg.Type == pipes.TypeMesh {
			// The needs with ingress and the upstreams' targets, whole:
			// kept across links (each sends its own after the welcome). The first of a link is answered
			// with the ingress report, whatever changed.
			var m pipes.Mesh
			if err := msg.Decode(&m); err != nil {
				a.log.Warn("bad mesh from lanmanager", "err", err)
				ob.pushError(msg.ID, err)
				continue
			}
			a.ingress.setMesh(&m, !meshed)
			a.mirror.setTargets(m.Targets)
			if a.gateway != nil {
				a.gateway.setMesh(&m)
			}
			meshed = true
			continue
		}
		if err := a.handle(ob, msg); err != nil {
			a.log.Warn("bad message from lanmanager", "type", msg.Type, "err", err)
			ob.pushError(msg.ID, err)
			if msg.Type == pipes.TypeError {
				return err
			}
		}
	}
}

// Liveness defaults, for a lanmanager whose welcome does not say.
const (
	DefaultHeartbeat = time.Second
	DefaultLinkTTL   = 5 * time.Second
)

// liveness carries what the link's reader learns to its watcher.
type liveness struct {
	heardC   chan struct{}      // a token per received frame (coalesced)
	welcomeC chan pipes.Welcome // the welcome, once

	mu     sync.Mutex // Protects following.
	silent error      // set by the watcher when it dropped a silent link
}

func newLiveness() *liveness {
	return &liveness{heardC: make(chan struct{}, 1), welcomeC: make(chan pipes.Welcome, 1)}
}

func (lv *liveness) heard() {
	select {
	case lv.heardC <- struct{}{}:
	default:
	}
}

func (lv *liveness) welcomed(w pipes.Welcome) {
	select {
	case lv.welcomeC <- w:
	default: // a second welcome changes nothing
	}
}

func (lv *liveness) silentErr() error {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.silent
}

// linkTimes returns the heartbeat and TTL a welcome asks for, with the
// defaults for what it leaves out. The heartbeat is kept below the TTL so
// that the lanmanager's pongs alone keep a healthy link alive.
func linkTimes(w pipes.Welcome) (heartbeat, ttl time.Duration) {
	heartbeat, ttl = DefaultHeartbeat, DefaultLinkTTL
	// Out-of-range values (Welcome.Validate refuses them) fall back to the
	// defaults rather than overflow into a negative ticker interval.
	if w.HeartbeatMS > 0 && w.HeartbeatMS <= pipes.MaxLinkMS {
		heartbeat = time.Duration(w.HeartbeatMS) * time.Millisecond
	}
	if w.TTLMS > 0 && w.TTLMS <= pipes.MaxLinkMS {
		ttl = time.Duration(w.TTLMS) * time.Millisecond
	}
	if heartbeat >= ttl {
		heartbeat = ttl / 3
	}
	return heartbeat, ttl
}

// watchLink drops the link when no frame has come from the lanmanager for
// its TTL (DefaultLinkTTL until the welcome says otherwise), so that a
// lanmanager that vanished without closing the connection is noticed and
// redialled. After the welcome it starts the pinger, whose pongs keep a
// healthy link busy, and sets the link's TTL as the longest a write may
// block. A link whose outbound queue overflowed is dropped at once. Timers
// run on the monotonic clock. It returns when the link is closed, by anyone.
func (a *Agent) watchLink(ob *outbox, lv *liveness, wg *sync.WaitGroup) {
	conn := ob.conn
	ttl := DefaultLinkTTL
	silence := time.NewTimer(ttl)
	defer silence.Stop()
	pinging := false
	for {
		select {
		case <-conn.Done():
			return
		case <-ob.full:
			a.log.Warn("lanmanager not reading: outbound queue full; dropping the link", "frames", maxQueued)
			conn.Close()
			return
		case <-lv.heardC:
			silence.Reset(ttl)
		case w := <-lv.welcomeC:
			var hb time.Duration
			hb, ttl = linkTimes(w)
			ob.stall.Store(int64(ttl))
			silence.Reset(ttl)
			if !pinging {
				pinging = true
				wg.Go(func() { pingLink(conn, hb) })
			}
		case <-silence.C:
			lv.mu.Lock()
			lv.silent = fmt.Errorf("no frame from the lanmanager for %s (link TTL)", ttl)
			lv.mu.Unlock()
			a.log.Warn("lanmanager silent; dropping the link", "ttl", ttl)
			conn.Close()
			return
		}
	}
}

// pingLink sends a ping every heartbeat until the link is closed. A send
// blocked by a peer that stopped reading ends when the watcher closes conn.
func pingLink(conn *pipes.Conn, heartbeat time.Duration) {
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	var id uint64
	for {
		select {
		case <-conn.Done():
			return
		case <-t.C:
			id++
			if conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: id}) != nil {
				return
			}
		}
	}
}

// handle acts on one frame from the lanmanager; answers are queued on ob.
func (a *Agent) handle(ob *outbox, msg *pipes.Msg) error {
	switch msg.Type {
	case pipes.TypePong:
	case pipes.TypePing:
		ob.push(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID}, nil)
	case pipes.TypeOffer:
		var o pipes.Offer
		if err := msg.Decode(&o); err != nil {
			return err
		}
		ob.pushBody(pipes.TypeBid, 0, a.bid(&o), nil)
	case pipes.TypeGrant:
		var g pipes.Grant
		if err := msg.Decode(&g); err != nil {
			return err
		}
		a.grant(&g)
	case pipes.TypeApprove:
		var r pipes.AllocRef
		if err := msg.Decode(&r); err != nil {
			return err
		}
		if c := a.child(r.Alloc); c != nil {
			c.mu.Lock()
			c.approved = true
			c.mu.Unlock()
		}
	case pipes.TypeStop:
		var s pipes.Stop
		if err := msg.Decode(&s); err != nil {
			return err
		}
		grace := a.opts.StopGrace
		if s.GraceMS > 0 {
			grace = time.Duration(s.GraceMS) * time.Millisecond
		}
		c := a.child(s.Alloc)
		if c == nil {
			// Already gone: confirm so the lanmanager can drop its record.
			ob.pushBody(pipes.TypeExited, 0, &pipes.Exited{Alloc: s.Alloc, Code: -1, Reason: "not running", Requested: true}, nil)
			return nil
		}
		c.stop(a, s.Reason, grace)
	case pipes.TypeLogs:
		var l pipes.Logs
		if err := msg.Decode(&l); err != nil {
			return err
		}
		return a.startLogs(ob, msg.ID, &l)
	case pipes.TypeLogsCancel:
		a.cancelLogs(msg.ID)
	case pipes.TypeLoads:
		var l pipes.Loads
		if err := msg.Decode(&l); err != nil {
			return err
		}
		a.remote.take(&l, time.Now())
	case pipes.TypeError:
		if msg.Error != nil {
			return msg.Error
		}
	default:
		return fmt.Errorf("%w: message type %q", pipes.ErrUnsupported, msg.Type)
	}
	return nil
}

// childStats is the latest heartbeat of the child alloc, or nil.
func (a *Agent) childStats(alloc string) *pipes.Stats {
	c := a.child(alloc)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (a *Agent) child(alloc string) *child {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.children[alloc]
}

// bid says whether this master can take the offered instance.
func (a *Agent) bid(o *pipes.Offer) *pipes.Bid {
	b := &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true}
	if o.Need.Machine != "" && o.Need.Machine != a.name {
		b.OK, b.Reason = false, "pinned to master "+o.Need.Machine
		return b
	}
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		b.OK, b.Reason = false, "shutting down"
		return b
	}
	if why := a.driverRefusal(&o.Need); why != "" {
		b.OK, b.Reason = false, why
		return b
	}
	if err := a.findCommand(o); err != nil {
		b.OK, b.Reason = false, err.Error()
		return b
	}
	if err := a.track.limits.Can(o.Need.Limit()); err != nil {
		b.OK, b.Reason = false, err.Error()
		return b
	}
	ranges := a.office.Ranges()
	for _, p := range o.Need.Protocols {
		r, ok := ranges[p]
		switch {
		case !ok:
			b.OK, b.Reason = false, "no "+string(p)+" port range configured"
		case a.office.Free(p) == 0:
			b.OK, b.Reason = false, string(p)+" range "+r.String()+" exhausted"
		}
		if !b.OK {
			return b
		}
	}
	return b
}

// findCommand checks that the need's program can run here as the spawn
// will run it: its command expanded with spawn.ExpandArgs and resolved with
// spawn.ResolveCommand, which the exec driver calls at the spawn, against
// the environment childEnv gives the child (the master's own, the need's
// env, the BERTH_ variables; ports are not leased yet, so their variables
// are 0 here). So a need that sets PATH, or names ${NAME} from its env,
// is bid for when it would run, and refused when it would not.
func (a *Agent) findCommand(o *pipes.Offer) error {
	env := a.childEnv(&child{need: o.Need, instance: o.Instance})
	command := spawn.ExpandArgs(o.Need.Command, env)
	_, err := spawn.ResolveCommand(command, env, "")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, spawn.ErrEmptyCommand):
		return err
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("command %q not found in PATH (the child's: %q)", command[0], envLast(env, "PATH"))
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("command %q is not an executable file", command[0])
	}
	return fmt.Errorf("command %q: %w", command[0], err)
}

// envLast returns the value of the last definition of key in env, or "".
func envLast(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
