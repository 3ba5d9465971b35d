package lifecycle

import (
	"time"

	"berth/needs"
	"berth/pipes"
)

// Config holds the durations the machine applies.
type Config struct {
	// StopGrace is the SIGTERM-to-SIGKILL grace sent with every stop.
	StopGrace time.Duration
	// StartDeadline bounds how long a granted placement may go without its
	// master reporting the child.
	StartDeadline time.Duration
	// RetryAfter is how long an instance that could not be placed (or whose
	// replacement failed) waits before it is offered again.
	RetryAfter time.Duration
}

// Retiring is an allocation that a handoff replaced: it was told to stop
// and counts on its master until the master confirms, goes, or is lost.
type Retiring struct {
	MasterID string
	Instance string
}

// MasterRef names the master an event comes from, or a grant goes to.
type MasterRef struct {
	ID, Name string
	// Address is the address the master registered with: the only one the
	// lanmanager dials.
	Address string
}

// State is what the lanmanager knows of needs and instances. Its maps are
// the owner's to read; only Step and Load change them.
type State struct {
	cfg Config

	Needs    map[string]*needs.Need
	Insts    map[string]*needs.Instance
	Drained  map[string]time.Time // draining masters, by name → since
	Retiring map[string]Retiring  // allocations a handoff replaced, by alloc
	// Moving maps the instances to move off their master for a rebalance
	// to the id of that master; the owner sets and clears it.
	Moving map[string]string

	earlyReady map[string]bool   // allocs whose child said ready before its started report
	checking   map[string]bool   // allocs whose port check runs
	waiting    map[string]string // allocs without ports waiting out the minimum uptime → instance
	allocs     map[string]string // alloc → instance: an index, checked on every use
	byNeed     map[string]map[string]*needs.Instance
	byState    map[needs.State]map[string]*needs.Instance
	handing    map[string]*needs.Instance // instances with a handoff
	// perNeed and total count placements (handoffs included) per master
	// id: of each need, and in all; counted what each instance adds.
	perNeed map[string]map[string]int
	total   map[string]int
	counted map[string]counted
}

// counted is what an instance adds to the placement counts.
type counted struct{ need, master, handoff string }

// New returns a state holding what was loaded from storage.
func New(cfg Config, ns map[string]*needs.Need, is map[string]*needs.Instance, drained map[string]time.Time) *State {
	st := &State{cfg: cfg, Needs: ns, Insts: is, Drained: drained, Retiring: map[string]Retiring{}, Moving: map[string]string{},
		earlyReady: map[string]bool{}, checking: map[string]bool{}, waiting: map[string]string{}, allocs: map[string]string{},
		byNeed: map[string]map[string]*needs.Instance{}, byState: map[needs.State]map[string]*needs.Instance{},
		handing: map[string]*needs.Instance{}, perNeed: map[string]map[string]int{}, total: map[string]int{},
		counted: map[string]counted{}}
	if st.Needs == nil {
		st.Needs = map[string]*needs.Need{}
	}
	if st.Insts == nil {
		st.Insts = map[string]*needs.Instance{}
	}
	if st.Drained == nil {
		st.Drained = map[string]time.Time{}
	}
	for _, in := range st.Insts {
		st.index(in)
		st.addToNeed(in)
		st.track(in)
	}
	return st
}

// InState returns the instances in state s, by name. The map is the
// state's own: read it, do not keep it.
func (st *State) InState(s needs.State) map[string]*needs.Instance { return st.byState[s] }

// Handing returns the instances with a handoff, by name, like InState.
func (st *State) Handing() map[string]*needs.Instance { return st.handing }

// track files in under its state, and among those with a handoff if it
// has one.
func (st *State) track(in *needs.Instance) {
	for s, m := range st.byState {
		if s != in.State {
			delete(m, in.Name)
		}
	}
	m := st.byState[in.State]
	if m == nil {
		m = map[string]*needs.Instance{}
		st.byState[in.State] = m
	}
	m[in.Name] = in
	if in.Handoff != nil {
		st.handing[in.Name] = in
	} else {
		delete(st.handing, in.Name)
	}
	c := counted{need: in.Need}
	if in.State.Placed() {
		c.master = in.MasterID
	}
	if in.Handoff != nil {
		c.handoff = in.Handoff.MasterID
	}
	st.recount(in.Name, c)
}

// recount replaces what the instance of that name adds to the counts.
func (st *State) recount(name string, c counted) {
	old := st.counted[name]
	if old == c {
		return
	}
	st.countOne(old.need, old.master, -1)
	st.countOne(old.need, old.handoff, -1)
	st.countOne(c.need, c.master, 1)
	st.countOne(c.need, c.handoff, 1)
	if c.master == "" && c.handoff == "" {
		delete(st.counted, name)
	} else {
		st.counted[name] = c
	}
}

func (st *State) countOne(need, master string, d int) {
	if master == "" {
		return
	}
	m := st.perNeed[need]
	if m == nil {
		m = map[string]int{}
		st.perNeed[need] = m
	}
	if m[master] += d; m[master] == 0 {
		delete(m, master)
		if len(m) == 0 {
			delete(st.perNeed, need)
		}
	}
	if st.total[master] += d; st.total[master] == 0 {
		delete(st.total, master)
	}
}

// Placements returns how many placements (handoffs included) master id
// holds: of the need, and in all.
func (st *State) Placements(need, id string) (ofNeed, total int) {
	return st.perNeed[need][id], st.total[id]
}

// put files in again after a change and records it for persisting.
func (st *State) put(fx *Effects, in *needs.Instance) {
	st.track(in)
	fx.put(in)
}

// add puts in into Insts and the indexes.
func (st *State) add(in *needs.Instance) {
	st.Insts[in.Name] = in
	st.index(in)
	st.addToNeed(in)
	st.track(in)
}

func (st *State) addToNeed(in *needs.Instance) {
	m := st.byNeed[in.Need]
	if m == nil {
		m = map[string]*needs.Instance{}
		st.byNeed[in.Need] = m
	}
	m[in.Name] = in
}

// forget removes in from Insts and the indexes (the alloc index cleans
// itself on use).
func (st *State) forget(in *needs.Instance) {
	delete(st.Insts, in.Name)
	for _, m := range st.byState {
		delete(m, in.Name)
	}
	delete(st.handing, in.Name)
	st.recount(in.Name, counted{})
	if m := st.byNeed[in.Need]; m != nil {
		delete(m, in.Name)
		if len(m) == 0 {
			delete(st.byNeed, in.Need)
		}
	}
}

// index records in's allocations in the alloc index.
func (st *State) index(in *needs.Instance) {
	if in.Alloc != "" {
		st.allocs[in.Alloc] = in.Name
	}
	if in.Handoff != nil {
		st.allocs[in.Handoff.Alloc] = in.Name
	}
}

// ByAlloc finds the instance that alloc places: as its current placement,
// or (handoff true) as its handoff.
func (st *State) ByAlloc(alloc string) (in *needs.Instance, handoff bool) {
	name, ok := st.allocs[alloc]
	if !ok || alloc == "" {
		return nil, false
	}
	in = st.Insts[name]
	switch {
	case in == nil:
	case in.Alloc == alloc:
		return in, false
	case in.Handoff != nil && in.Handoff.Alloc == alloc:
		return in, true
	}
	delete(st.allocs, alloc) // the placement moved on: the entry is stale
	return nil, false
}

// Draining reports whether the master of that name drains.
func (st *State) Draining(name string) bool {
	_, ok := st.Drained[name]
	return ok
}

// WantsHandoff reports whether in should get a replacement on another
// master: it runs on a draining master, or is to move off its master for a
// rebalance, and has none yet.
func (st *State) WantsHandoff(in *needs.Instance) bool {
	return in.State == needs.Running && !in.Removing && in.Handoff == nil && (st.Draining(in.Master) || st.moving(in))
}

// moving reports whether in is to move off the master it runs on.
func (st *State) moving(in *needs.Instance) bool {
	from, ok := st.Moving[in.Name]
	return ok && from == in.MasterID
}

// HandoffEnd says that an instance's handoff ended: the replacement took
// over (Moved) or was given up (Why).
type HandoffEnd struct {
	Instance         string
	Moved            bool
	FromID, FromName string
	Why              string
}

// Frame is a message to one master. Err set means an error frame.
type Frame struct {
	MasterID string
	Type     string
	Body     any
	Err      error
}

// Check is a port check to run: every declared port of the placement must
// accept a connection on the master's address; its result comes back as
// a [Checked] event.
type Check struct {
	Instance, Alloc, Address string
	Protocols                []needs.Protocol
	Ports                    map[needs.Protocol]int
}

// Move is one change of an instance's state, with the event that caused it.
type Move struct {
	Instance string
	From, To needs.State
	On       string
}

// Effects collects what events require of the world, in order. The owner
// applies them and resets it (see Reset).
type Effects struct {
	// Records maps the instances whose record changed to true (persist
	// it) or false (delete it); Emit, those whose state changed without a
	// write (persisted already), to publish only.
	Records map[string]bool
	Emit    map[string]bool
	// Removed are the instances deleted, as they were last.
	Removed []*needs.Instance
	Frames  []Frame
	Checks  []Check
	// Uptime lists the allocations without ports that wait out the
	// minimum uptime; the owner sends UptimeElapsed when it is over.
	Uptime []string
	// Retry maps instances to the earliest time of their next offer;
	// ClearRetries drops every such wait (a master has capacity again).
	Retry        map[string]time.Time
	ClearRetries bool
	// Handoffs lists the handoffs that ended.
	Handoffs []HandoffEnd
	// Wake asks for a placer pass soon.
	Wake bool
	// Due is, after a Tick, when the next tick is needed (zero: none).
	Due time.Time
	// Logs are lines for the owner's log.
	Logs []Log
	// Moves lists every state change, for tests and tracing.
	Moves []Move
}

// Log is a line for the owner's log.
type Log struct {
	Msg  string
	Args []any
}

// Reset empties fx for the next batch, keeping its allocations.
func (fx *Effects) Reset() {
	clear(fx.Records)
	clear(fx.Emit)
	clear(fx.Retry)
	fx.Removed, fx.Frames, fx.Checks, fx.Uptime = fx.Removed[:0], fx.Frames[:0], fx.Checks[:0], fx.Uptime[:0]
	fx.Logs, fx.Moves, fx.Handoffs = fx.Logs[:0], fx.Moves[:0], fx.Handoffs[:0]
	fx.ClearRetries, fx.Wake, fx.Due = false, false, time.Time{}
}

// Empty reports whether fx asks for nothing.
func (fx *Effects) Empty() bool {
	return len(fx.Records)+len(fx.Emit)+len(fx.Removed)+len(fx.Frames)+len(fx.Checks)+len(fx.Uptime)+len(fx.Retry)+len(fx.Logs)+len(fx.Handoffs) == 0 &&
		!fx.ClearRetries && !fx.Wake
}

func (fx *Effects) put(in *needs.Instance) {
	if fx.Records == nil {
		fx.Records = map[string]bool{}
	}
	fx.Records[in.Name] = true
}

func (fx *Effects) emit(in *needs.Instance) {
	if fx.Emit == nil {
		fx.Emit = map[string]bool{}
	}
	fx.Emit[in.Name] = true
}

func (fx *Effects) remove(in *needs.Instance) {
	if fx.Records == nil {
		fx.Records = map[string]bool{}
	}
	fx.Records[in.Name] = false
	delete(fx.Emit, in.Name)
	fx.Removed = append(fx.Removed, in.Clone())
}

func (fx *Effects) retry(name string, at time.Time) {
	if fx.Retry == nil {
		fx.Retry = map[string]time.Time{}
	}
	fx.Retry[name] = at
}

func (fx *Effects) send(masterID, typ string, body any) {
	fx.Frames = append(fx.Frames, Frame{MasterID: masterID, Type: typ, Body: body})
}

func (fx *Effects) log(msg string, args ...any) {
	fx.Logs = append(fx.Logs, Log{Msg: msg, Args: args})
}

// stop tells a master to stop an allocation.
func (st *State) stop(fx *Effects, masterID, alloc, why string) {
	fx.send(masterID, pipes.TypeStop, &pipes.Stop{Alloc: alloc, Reason: why, GraceMS: int(st.cfg.StopGrace / time.Millisecond)})
}

// sendStop asks the instance's master to stop its allocation.
func (st *State) sendStop(fx *Effects, in *needs.Instance, why string) {
	if in.Alloc != "" && in.MasterID != "" {
		st.stop(fx, in.MasterID, in.Alloc, why)
	}
}

// set moves in to state to at now, because of event on, and records it
// for persisting. A move that Table does not list is a bug: it is logged
// and recorded all the same, and the tests fail on it.
func (st *State) set(fx *Effects, in *needs.Instance, to needs.State, now time.Time, on string) {
	if in.State != to {
		fx.Moves = append(fx.Moves, Move{Instance: in.Name, From: in.State, To: to, On: on})
		if !Allowed(in.State, to, on) {
			fx.log("lifecycle: transition not in the table", "instance", in.Name, "from", in.State, "to", to, "on", on)
		}
	}
	in.State, in.Since = to, now.UTC()
	st.put(fx, in)
}
