package lifecycle

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"berth/needs"
	"berth/pipes"
)

// Event is something that happened to instances. Step takes one at a time.
type Event interface{ name() string }

// Granted: the placer picked a master for a pending instance (or, with
// Handoff, for the replacement of a running instance whose master drains).
// Alloc is the new placement's id. Refused unless the instance still waits
// for exactly that.
type Granted struct {
	Instance, Alloc string
	Master          MasterRef
	Handoff         bool
}

// Unplaced: no master could take the instance (or its replacement); Why
// says so and the instance is offered again after RetryAfter.
type Unplaced struct{ Instance, Why string }

// Started: a master reports a child it spawned (or still runs, when it
// reconnects).
type Started struct {
	Master MasterRef
	Report pipes.Started
}

// Ready: a child without ports said it is ready.
type Ready struct{ MasterID, Alloc string }

// UptimeElapsed: a child without ports stayed up for the minimum uptime.
type UptimeElapsed struct{ Alloc string }

// Checked: the port check of an allocation ended; Err empty means every
// port answered.
type Checked struct{ Instance, Alloc, Err string }

// Exited: a master reports a child gone.
type Exited struct {
	MasterID string
	Report   pipes.Exited
}

// Reconnected: a master connected with the exits it could not send while
// its link was down and the allocations it runs. What the records place on
// it and it no longer has is placed again; what it has and the records do
// not place on it is stopped.
type Reconnected struct {
	Master MasterRef
	Exits  []pipes.Exited
	Allocs []pipes.Started
}

// MasterLost: a master was not heard from for its TTL. Its instances are
// placed again (or move to a replacement under way) and its replacements
// are dropped.
type MasterLost struct{ MasterID, Why string }

// Tick: time passed. Placements granted but not reported within
// StartDeadline fail, replacements not started by then are dropped, and
// backed-off instances whose time has come are pending again.
type Tick struct{}

// Drained: a master's drain began (On) or ended; already persisted.
type Drained struct {
	Name string
	On   bool
}

// Committed: the API persisted a change (see the Plan functions); it is
// applied to the state.
type Committed struct{ Change *Change }

func (Granted) name() string       { return "grant" }
func (Unplaced) name() string      { return "unplaced" }
func (Started) name() string       { return "started" }
func (Ready) name() string         { return "ready" }
func (UptimeElapsed) name() string { return "uptime" }
func (Checked) name() string       { return "checked" }
func (Exited) name() string        { return "exited" }
func (Reconnected) name() string   { return "reconnected" }
func (MasterLost) name() string    { return "master lost" }
func (Tick) name() string          { return "tick" }
func (Drained) name() string       { return "drain" }
func (Committed) name() string     { return "committed" }

// Step applies ev, which happened at now, and adds its effects to fx.
func (st *State) Step(fx *Effects, now time.Time, ev Event) {
	switch e := ev.(type) {
	case Granted:
		st.granted(fx, now, e)
	case Unplaced:
		if in := st.Insts[e.Instance]; in != nil {
			st.setReason(fx, in, e.Why)
			fx.retry(in.Name, now.Add(st.cfg.RetryAfter))
		}
	case Started:
		st.started(fx, now, e.Master, &e.Report, "started")
	case Ready:
		st.ready(fx, now, e)
	case UptimeElapsed:
		name, ok := st.waiting[e.Alloc]
		if !ok {
			return
		}
		delete(st.waiting, e.Alloc)
		if in := st.Insts[name]; in != nil {
			st.approved(fx, now, in, e.Alloc, "uptime")
		}
	case Checked:
		st.checked(fx, now, e)
	case Exited:
		st.exited(fx, now, e.MasterID, &e.Report)
	case Reconnected:
		fx.ClearRetries, fx.Wake = true, true // new capacity: offer everything again
		for i := range e.Exits {
			st.exited(fx, now, e.Master.ID, &e.Exits[i])
		}
		st.reconcile(fx, now, e.Master, e.Allocs)
	case MasterLost:
		st.masterLost(fx, now, e)
	case Tick:
		st.tick(fx, now)
	case Drained:
		st.drained(fx, now, e)
	case Committed:
		st.commit(fx, e.Change)
	default:
		panic(fmt.Sprintf("lifecycle: unknown event %T", ev))
	}
}

func (st *State) setReason(fx *Effects, in *needs.Instance, why string) {
	if in.Reason != why {
		in.Reason = why
		st.put(fx, in)
	}
}

func (st *State) granted(fx *Effects, now time.Time, g Granted) {
	in := st.Insts[g.Instance]
	if in == nil || in.Removing || g.Alloc == "" || g.Master.ID == "" {
		return
	}
	n := st.Needs[in.Need]
	if n == nil {
		return
	}
	if _, taken := st.allocs[g.Alloc]; taken {
		return // an allocation id names one placement, ever
	}
	p := needs.Placement{Alloc: g.Alloc, MasterID: g.Master.ID, Master: g.Master.Name, Address: g.Master.Address}
	if g.Handoff {
		if !st.WantsHandoff(in) || g.Master.ID == in.MasterID {
			return
		}
		in.Handoff = &needs.Handoff{Placement: p, Since: now.UTC()}
		in.Reason = fmt.Sprintf("master %s is draining; replacement starting on master %s", in.Master, g.Master.Name)
		if !st.Draining(in.Master) {
			in.Reason = "rebalancing: replacement starting on master " + g.Master.Name
		}
		st.put(fx, in)
	} else {
		if in.State != needs.Pending {
			return
		}
		in.Placement = p
		in.Reason = ""
		st.set(fx, in, needs.Starting, now, "grant")
	}
	st.allocs[g.Alloc] = in.Name
	fx.send(g.Master.ID, pipes.TypeGrant, &pipes.Grant{Instance: in.Name, Alloc: g.Alloc, Need: *n})
}

// started records a master's report of a spawned child and starts its
// approval. A report for an allocation that is neither the instance's
// current placement nor its handoff on that master is stale: the master is
// told to stop it. A report for an allocation that is approved already, or
// whose approval is under way, changes nothing (but a ready one may approve
// a child without ports at once): each allocation is checked once, however
// many times it is reported. A report whose address is not the one the
// master registered with is refused: the lanmanager only ever dials a
// master's registered address.
func (st *State) started(fx *Effects, now time.Time, m MasterRef, r *pipes.Started, on string) {
	if owner, _ := st.ByAlloc(r.Alloc); owner != nil && owner.Name != r.Instance {
		// A confused report: stopping the allocation would stop another
		// instance's child on its word. Refused; the placement stands.
		st.refuse(fx, m, &needs.FieldError{Field: "instance",
			Msg: fmt.Sprintf("allocation %s places instance %s, not %s", r.Alloc, owner.Name, r.Instance)})
		return
	}
	in, handoff := st.Insts[r.Instance], false
	switch {
	case in == nil:
	case in.Alloc == r.Alloc:
	case in.Handoff != nil && in.Handoff.Alloc == r.Alloc:
		handoff = true
	default:
		in = nil // the instance is placed under another allocation now
	}
	switch {
	case in == nil,
		handoff && in.Handoff.MasterID != m.ID,
		!handoff && in.MasterID != m.ID:
		st.stop(fx, m.ID, r.Alloc, "stale allocation")
		return
	case !handoff && in.State == needs.Stopping:
		st.sendStop(fx, in, in.Reason)
		return
	case r.Address != "" && r.Address != m.Address:
		st.refuse(fx, m, &needs.FieldError{Field: "address", Msg: fmt.Sprintf("%q is not the address master %s registered with (%s)",
			r.Address, m.Name, m.Address)})
		return
	case !handoff && in.State == needs.Running:
		return // approved already
	}
	n := st.Needs[in.Need]
	if st.checking[r.Alloc] {
		return // its check is under way
	}
	if _, waiting := st.waiting[r.Alloc]; waiting {
		if r.Ready && n != nil && len(n.Protocols) == 0 {
			delete(st.waiting, r.Alloc)
			st.approved(fx, now, in, r.Alloc, "ready")
		}
		return
	}
	p := &in.Placement
	if handoff {
		p = &in.Handoff.Placement
	}
	p.PID, p.Ports, p.StartedAt, p.Address = r.PID, r.Ports, r.StartedAt, m.Address
	if !handoff && in.State != needs.Starting {
		st.set(fx, in, needs.Starting, now, on)
	}
	st.put(fx, in)
	ready := r.Ready || st.earlyReady[r.Alloc]
	delete(st.earlyReady, r.Alloc)
	switch {
	case n == nil:
	case len(n.Protocols) == 0 && ready:
		st.approved(fx, now, in, r.Alloc, "ready")
	case len(n.Protocols) == 0:
		st.waiting[r.Alloc] = in.Name
		fx.Uptime = append(fx.Uptime, r.Alloc)
	default:
		st.checking[r.Alloc] = true
		fx.Checks = append(fx.Checks, Check{Instance: in.Name, Alloc: r.Alloc, Address: m.Address,
			Protocols: slices.Clone(n.Protocols), Ports: maps.Clone(r.Ports)})
	}
}

// refuse answers a started report that contradicts itself or the records
// with an error frame, and logs it.
func (st *State) refuse(fx *Effects, m MasterRef, err error) {
	fx.log("bad message from master", "master", m.Name, "type", pipes.TypeStarted, "err", err)
	fx.Frames = append(fx.Frames, Frame{MasterID: m.ID, Type: pipes.TypeError, Err: fmt.Errorf("started: %w", err)})
}

// ready approves a child without ports as soon as it says ready.
func (st *State) ready(fx *Effects, now time.Time, e Ready) {
	in, handoff := st.ByAlloc(e.Alloc)
	if in == nil {
		return
	}
	pid := in.PID
	if handoff {
		if in.Handoff.MasterID != e.MasterID {
			return
		}
		pid = in.Handoff.PID
	} else if in.MasterID != e.MasterID || in.State != needs.Starting {
		return
	}
	if pid == 0 {
		// The child spoke before its master's started report arrived.
		st.earlyReady[e.Alloc] = true
		return
	}
	if n := st.Needs[in.Need]; n != nil && len(n.Protocols) == 0 {
		delete(st.waiting, e.Alloc)
		st.approved(fx, now, in, e.Alloc, "ready")
	}
}

func (st *State) checked(fx *Effects, now time.Time, e Checked) {
	delete(st.checking, e.Alloc)
	in := st.Insts[e.Instance]
	if in == nil {
		return
	}
	switch {
	case in.Alloc == e.Alloc && in.State == needs.Starting:
		if e.Err != "" {
			st.reject(fx, now, in, e.Err)
			return
		}
		st.markRunning(fx, now, in, "checked")
	case in.Handoff != nil && in.Handoff.Alloc == e.Alloc:
		if e.Err != "" {
			st.dropHandoff(fx, now, in, fmt.Sprintf("replacement on master %s rejected: %s", in.Handoff.Master, e.Err))
			return
		}
		st.handoffApproved(fx, now, in)
	}
	// Otherwise the placement moved on meanwhile: the result is stale.
}

// approved approves alloc, in's placement or its handoff, if it is still
// waiting for approval.
func (st *State) approved(fx *Effects, now time.Time, in *needs.Instance, alloc, on string) {
	switch {
	case in.Alloc == alloc && in.State == needs.Starting:
		st.markRunning(fx, now, in, on)
	case in.Handoff != nil && in.Handoff.Alloc == alloc:
		st.handoffApproved(fx, now, in)
	}
}

func (st *State) markRunning(fx *Effects, now time.Time, in *needs.Instance, on string) {
	in.Reason = ""
	// The back-off's fields belong to the last failure: a running instance
	// shows none (fail sets them again on the next failure; Failures is
	// the streak, kept until ResetAfter of good running).
	in.NextAttempt, in.FailedOn = time.Time{}, ""
	st.set(fx, in, needs.Running, now, on)
	fx.send(in.MasterID, pipes.TypeApprove, &pipes.AllocRef{Alloc: in.Alloc})
}

// reject stops a child that failed its check and backs the instance off.
func (st *State) reject(fx *Effects, now time.Time, in *needs.Instance, why string) {
	st.sendStop(fx, in, "rejected: "+why)
	st.fail(fx, now, in, "rejected: "+why, "", "rejected")
}

// fail unplaces a failed instance and schedules its next attempt by the
// need's restart policy. If a replacement (handoff) is under way, the
// instance moves to it instead.
func (st *State) fail(fx *Effects, now time.Time, in *needs.Instance, why, exit, on string) {
	if exit == "" {
		exit = why
	}
	in.LastExit = exit
	delete(st.earlyReady, in.Alloc)
	fx.Wake = true
	if st.promote(fx, now, in, why, on) {
		return
	}
	var pol *needs.RestartPolicy
	if n := st.Needs[in.Need]; n != nil {
		pol = n.Restart
	}
	if in.State == needs.Running && now.Sub(in.Since) >= time.Duration(pol.Effective().ResetAfter) {
		in.Failures = 0 // it ran well: start the back-off over
	}
	in.Failures++
	in.Restarts++
	in.FailedOn = in.MasterID
	in.Unplace()
	in.Reason = why
	in.NextAttempt = now.UTC().Add(pol.Backoff(in.Failures))
	st.set(fx, in, needs.Backoff, now, on)
}

// promote moves an instance whose placement is gone to its handoff, if it
// has one; the replacement is starting until approved.
func (st *State) promote(fx *Effects, now time.Time, in *needs.Instance, why, on string) bool {
	if in.Handoff == nil {
		return false
	}
	since := in.Handoff.Since
	from := in.State
	in.Promote(false, since)
	in.Reason = why + "; moved to its replacement on master " + in.Master
	if from != needs.Starting {
		fx.Moves = append(fx.Moves, Move{Instance: in.Name, From: from, To: needs.Starting, On: on})
		if !Allowed(from, needs.Starting, on) {
			fx.log("lifecycle: transition not in the table", "instance", in.Name, "from", from, "to", needs.Starting, "on", on)
		}
	}
	st.put(fx, in)
	return true
}

// exited handles a child that is gone.
func (st *State) exited(fx *Effects, now time.Time, masterID string, e *pipes.Exited) {
	if r, ok := st.Retiring[e.Alloc]; ok && r.MasterID == masterID {
		delete(st.Retiring, e.Alloc) // an allocation a handoff replaced: stopped as asked
		fx.Wake = true
		return
	}
	in, handoff := st.ByAlloc(e.Alloc)
	if in == nil {
		return // stale: a newer placement exists, or it was rejected already
	}
	exit := describeExit(e)
	if handoff {
		if h := in.Handoff; h.MasterID == masterID {
			st.forgetHandoff(fx, now, in, fmt.Sprintf("replacement on master %s exited: %s", h.Master, exit))
		}
		return
	}
	if in.MasterID != masterID {
		return
	}
	fx.ClearRetries = true // the master has capacity again
	fx.Wake = true
	switch {
	case in.Removing:
		st.drop(fx, in)
	case in.State == needs.Stopping:
		in.Unplace()
		in.Reason, in.LastExit = "", exit
		st.set(fx, in, needs.Pending, now, "exited")
	default:
		why := "exited: " + exit
		if e.Reason != "" {
			why = e.Reason
		}
		st.fail(fx, now, in, why, exit, "exited")
	}
}

func describeExit(e *pipes.Exited) string {
	if e.OOMKilled {
		oom := "oom-killed"
		if e.MemoryLimit != 0 {
			oom += " (memory " + e.MemoryLimit.String() + ")"
		}
		if e.Signal == "" && e.Code >= 0 { // the leader outlived the process killed
			return "exit code " + strconv.Itoa(e.Code) + " after a process was " + oom
		}
		return oom
	}
	switch {
	case e.Signal != "":
		return "signal " + e.Signal
	case e.Code >= 0:
		return "exit code " + strconv.Itoa(e.Code)
	case e.Reason != "":
		return e.Reason
	}
	return "gone"
}

// drop deletes an instance record for good.
func (st *State) drop(fx *Effects, in *needs.Instance) {
	if in.Handoff != nil {
		st.stopHandoff(fx, in.Handoff, "instance removed")
	}
	st.forget(in)
	delete(st.earlyReady, in.Alloc)
	fx.remove(in)
}

// reconcile compares a master's running allocations with the records.
// Current ones are kept (and checked again if not yet approved), stale or
// unknown ones are stopped, and placements the master no longer has are
// placed again. Handoff placements are treated the same way.
func (st *State) reconcile(fx *Effects, now time.Time, m MasterRef, allocs []pipes.Started) {
	has, listed := map[string]bool{}, map[string]bool{}
	for i := range allocs {
		a := &allocs[i]
		if listed[a.Alloc] {
			continue // listed twice: once is enough
		}
		listed[a.Alloc] = true
		in, handoff := st.ByAlloc(a.Alloc)
		owner := ""
		if in != nil {
			owner = in.MasterID
			if handoff {
				owner = in.Handoff.MasterID
			}
		}
		if in == nil || owner != m.ID || in.Name != a.Instance {
			st.stop(fx, m.ID, a.Alloc, "allocation unknown to the lanmanager")
			continue
		}
		has[a.Alloc] = true
		switch {
		case handoff:
			st.started(fx, now, m, a, "reconnected")
		case in.State == needs.Stopping:
			st.stop(fx, m.ID, a.Alloc, in.Reason)
		case in.State == needs.Running && in.PID == a.PID:
			// Unchanged; approve again in case the first approval was lost.
			fx.send(m.ID, pipes.TypeApprove, &pipes.AllocRef{Alloc: a.Alloc})
		default:
			st.started(fx, now, m, a, "reconnected")
		}
	}
	for alloc, r := range st.Retiring {
		if r.MasterID == m.ID && !listed[alloc] {
			delete(st.Retiring, alloc) // gone meanwhile; a listed one was told to stop again above
		}
	}
	var lost, lostHandoff []*needs.Instance
	for _, in := range st.Insts {
		if in.MasterID == m.ID && in.State.Placed() && !has[in.Alloc] {
			lost = append(lost, in)
		}
		if h := in.Handoff; h != nil && h.MasterID == m.ID && !has[h.Alloc] {
			lostHandoff = append(lostHandoff, in)
		}
	}
	sortByName(lostHandoff)
	sortByName(lost)
	for _, in := range lostHandoff {
		st.dropHandoff(fx, now, in, fmt.Sprintf("replacement on master %s is gone", m.Name))
	}
	for _, in := range lost {
		st.placementGone(fx, now, in, fmt.Sprintf("master %s no longer runs it", m.Name), "reconnected")
	}
}

func sortByName(ins []*needs.Instance) {
	slices.SortFunc(ins, func(a, b *needs.Instance) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
}

// placementGone handles an instance whose placement vanished without a
// failure of its own (its master lost it or was lost): an instance being
// removed is dropped, one with a handoff under way moves to it, any other
// is pending again, with no back-off.
func (st *State) placementGone(fx *Effects, now time.Time, in *needs.Instance, why, on string) {
	fx.Wake = true
	if in.Removing {
		st.drop(fx, in)
		return
	}
	delete(st.earlyReady, in.Alloc)
	if st.promote(fx, now, in, why, on) {
		return
	}
	in.Unplace()
	in.Reason = why
	st.set(fx, in, needs.Pending, now, on)
}

func (st *State) masterLost(fx *Effects, now time.Time, e MasterLost) {
	var moved, handoffs []*needs.Instance
	for _, in := range st.Insts {
		if h := in.Handoff; h != nil && h.MasterID == e.MasterID {
			handoffs = append(handoffs, in)
		}
		if in.MasterID == e.MasterID && in.State.Placed() {
			moved = append(moved, in)
		}
	}
	sortByName(handoffs)
	sortByName(moved)
	for _, in := range handoffs {
		st.dropHandoff(fx, now, in, "replacement "+e.Why)
	}
	for _, in := range moved {
		st.placementGone(fx, now, in, e.Why, "master lost")
	}
	for alloc, r := range st.Retiring {
		if r.MasterID == e.MasterID {
			delete(st.Retiring, alloc)
		}
	}
	fx.Wake = true
}

// tick applies the deadlines: granted placements never reported, handoffs
// never started, backed-off instances due again.
func (st *State) tick(fx *Effects, now time.Time) {
	due := func(t time.Time) {
		if fx.Due.IsZero() || t.Before(fx.Due) {
			fx.Due = t
		}
	}
	for _, in := range st.handing {
		if h := in.Handoff; h != nil && h.PID == 0 {
			if now.Sub(h.Since) >= st.cfg.StartDeadline {
				st.dropHandoff(fx, now, in, fmt.Sprintf("replacement on master %s did not start within %s", h.Master, st.cfg.StartDeadline))
			} else {
				due(h.Since.Add(st.cfg.StartDeadline))
			}
		}
	}
	for _, in := range st.byState[needs.Starting] {
		if in.PID == 0 && !in.Removing {
			// Granted, but its master never reported the child.
			if now.Sub(in.Since) >= st.cfg.StartDeadline {
				st.sendStop(fx, in, "not started in time")
				st.fail(fx, now, in, fmt.Sprintf("master %s did not start it within %s", in.Master, st.cfg.StartDeadline), "", "deadline")
			} else {
				due(in.Since.Add(st.cfg.StartDeadline))
			}
		}
	}
	for _, in := range st.byState[needs.Backoff] {
		if !in.NextAttempt.After(now) {
			st.set(fx, in, needs.Pending, now, "due")
		} else {
			due(in.NextAttempt)
		}
	}
}

// drained applies the start or end of a master's drain. Ending it cancels
// the replacements of its instances.
func (st *State) drained(fx *Effects, now time.Time, e Drained) {
	fx.ClearRetries, fx.Wake = true, true
	if e.On {
		if !st.Draining(e.Name) {
			st.Drained[e.Name] = now.UTC()
		}
		return
	}
	delete(st.Drained, e.Name)
	for _, in := range st.Insts {
		if in.Master != e.Name || !in.State.Placed() {
			continue
		}
		if in.Handoff != nil {
			st.dropHandoff(fx, now, in, "")
		} else if in.State == needs.Running && in.Reason != "" {
			in.Reason = ""
			st.put(fx, in)
		}
	}
}

// dropHandoff cancels in's handoff: its master is told to stop the
// replacement and the instance stays where it runs. A non-empty why is
// recorded and the next replacement waits RetryAfter.
func (st *State) dropHandoff(fx *Effects, now time.Time, in *needs.Instance, why string) {
	h := in.Handoff
	if h == nil {
		return
	}
	reason := "replacement cancelled"
	if why != "" {
		reason = why
	}
	st.stopHandoff(fx, h, reason)
	st.forgetHandoff(fx, now, in, why)
}

// forgetHandoff is dropHandoff for a replacement that is gone already:
// nothing is stopped.
func (st *State) forgetHandoff(fx *Effects, now time.Time, in *needs.Instance, why string) {
	fx.Handoffs = append(fx.Handoffs, HandoffEnd{Instance: in.Name, FromID: in.MasterID, FromName: in.Master,
		Why: cmp.Or(why, "replacement cancelled")})
	delete(st.earlyReady, in.Handoff.Alloc)
	in.Handoff = nil
	in.Reason = why
	if why != "" {
		fx.retry(in.Name, now.Add(st.cfg.RetryAfter))
	}
	st.put(fx, in)
	fx.Wake = true
}

// stopHandoff tells a handoff's master to stop it.
func (st *State) stopHandoff(fx *Effects, h *needs.Handoff, why string) {
	delete(st.earlyReady, h.Alloc)
	st.stop(fx, h.MasterID, h.Alloc, why)
}

// handoffApproved makes an approved replacement the instance's placement,
// then tells the old master to stop the old allocation. The replacement is
// approved first: the instance never stops running.
func (st *State) handoffApproved(fx *Effects, now time.Time, in *needs.Instance) {
	old := in.Placement
	in.Promote(true, now.UTC())
	in.Reason = ""
	st.put(fx, in)
	fx.send(in.MasterID, pipes.TypeApprove, &pipes.AllocRef{Alloc: in.Alloc})
	st.Retiring[old.Alloc] = Retiring{MasterID: old.MasterID, Instance: in.Name}
	why := fmt.Sprintf("master %s drains: replaced by %s on master %s", old.Master, in.Alloc, in.Master)
	if !st.Draining(old.Master) {
		why = fmt.Sprintf("rebalanced: replaced by %s on master %s", in.Alloc, in.Master)
	}
	st.stop(fx, old.MasterID, old.Alloc, why)
	fx.Handoffs = append(fx.Handoffs, HandoffEnd{Instance: in.Name, Moved: true, FromID: old.MasterID, FromName: old.Master})
	fx.log("instance handed off", "instance", in.Name, "from", old.Master, "to", in.Master, "alloc", in.Alloc)
	fx.Wake = true
}

// commit applies a change the owner persisted: needs put or deleted,
// instance records put (stopping ones are told to stop) or deleted.
func (st *State) commit(fx *Effects, ch *Change) {
	for _, name := range ch.DeleteNeeds {
		delete(st.Needs, name)
	}
	for _, n := range ch.PutNeeds {
		st.Needs[n.Name] = n
	}
	for _, name := range ch.DeleteInstances {
		if in, ok := st.Insts[name]; ok {
			st.forget(in)
			fx.Removed = append(fx.Removed, in.Clone())
			delete(fx.Emit, name)
		}
	}
	for _, in := range ch.PutInstances {
		old := st.Insts[in.Name]
		if old != nil && old.Handoff != nil && (in.Handoff == nil || in.Handoff.Alloc != old.Handoff.Alloc) {
			st.stopHandoff(fx, old.Handoff, in.Reason) // the record in ch has none
		}
		if old != nil && old.State != in.State {
			fx.Moves = append(fx.Moves, Move{Instance: in.Name, From: old.State, To: in.State, On: "api"})
		}
		st.add(in)
		st.index(in)
		fx.emit(in)
		if in.State == needs.Stopping && (old == nil || old.State != needs.Stopping) {
			st.sendStop(fx, in, in.Reason) // once: a stopping instance was told already
		}
	}
	fx.Wake = true
}
