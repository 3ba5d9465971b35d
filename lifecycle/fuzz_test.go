package lifecycle

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// world drives a State with events decoded from fuzz bytes, and remembers
// what it needs to check the invariants.
type world struct {
	st      *State
	fx      Effects
	now     time.Time
	masters []MasterRef
	allocs  []string // every allocation id granted, in order
	// stopped holds the allocations told to stop, as "master alloc".
	stopped map[string]bool
	checks  []Check  // the port checks the machine asked for
	uptime  []string // the allocations it asked to wait for
}

func newWorld() *world {
	w := &world{st: New(testCfg, nil, nil, nil), now: t0, stopped: map[string]bool{},
		masters: []MasterRef{m1, m2, {ID: "id3", Name: "m3", Address: "10.0.0.3"}}}
	for _, n := range []*needs.Need{
		{Name: "web", Command: []string{"w"}, Instances: 2, Protocols: []needs.Protocol{needs.HTTP}},
		{Name: "idle", Command: []string{"i"}, Instances: 2},
	} {
		ch, _ := w.st.PlanAdd(n, w.now)
		w.st.Step(&w.fx, w.now, Committed{Change: ch})
	}
	w.fx.Reset()
	return w
}

// bytes reads the fuzz input one byte at a time; zeros once it is used up.
type bytes struct {
	b []byte
	i int
}

func (r *bytes) next(n int) int {
	if r.i >= len(r.b) {
		return 0
	}
	v := int(r.b[r.i])
	r.i++
	return v % n
}

func (w *world) instance(r *bytes) string {
	names := []string{"web.0", "web.1", "web.2", "idle.0", "idle.1", "idle.2"}
	return names[r.next(len(names))]
}

// alloc picks a granted allocation id, or one never granted.
func (w *world) alloc(r *bytes) string {
	if len(w.allocs) == 0 || r.next(8) == 0 {
		return "never"
	}
	return w.allocs[len(w.allocs)-1-r.next(min(len(w.allocs), 6))]
}

// current returns the placement alloc of name (or its handoff's).
func (w *world) current(name string, handoff bool) (string, string) {
	in := w.st.Insts[name]
	if in == nil {
		return "", ""
	}
	if handoff && in.Handoff != nil {
		return in.Handoff.Alloc, in.Handoff.MasterID
	}
	return in.Alloc, in.MasterID
}

// event decodes the next event, and the allocations it names (a master
// reporting an allocation may be told again to stop it).
func (w *world) event(r *bytes) (Event, map[string]bool) {
	m := w.masters[r.next(len(w.masters))]
	named := map[string]bool{}
	switch r.next(14) {
	case 0, 1:
		a := "a" + strconv.Itoa(len(w.allocs))
		w.allocs = append(w.allocs, a)
		return Granted{Instance: w.instance(r), Alloc: a, Master: m, Handoff: r.next(3) == 0}, named
	case 2, 3:
		name := w.instance(r)
		a, owner := w.current(name, r.next(2) == 0)
		if r.next(4) == 0 || a == "" {
			a = w.alloc(r)
		} else if r.next(4) != 0 {
			for _, mm := range w.masters {
				if mm.ID == owner {
					m = mm
				}
			}
		}
		named[a] = true
		return Started{Master: m, Report: pipes.Started{Alloc: a, Instance: name, PID: 1 + r.next(50),
			Ports: map[needs.Protocol]int{needs.HTTP: 8000}, Ready: r.next(2) == 0}}, named
	case 4:
		return Ready{MasterID: m.ID, Alloc: w.alloc(r)}, named
	case 5:
		if len(w.uptime) == 0 {
			return Tick{}, named
		}
		return UptimeElapsed{Alloc: w.uptime[r.next(len(w.uptime))]}, named
	case 6:
		// The owner sends Checked only for checks it started.
		if len(w.checks) == 0 {
			return Tick{}, named
		}
		c := w.checks[r.next(len(w.checks))]
		err := ""
		if r.next(3) == 0 {
			err = "unreachable"
		}
		return Checked{Instance: c.Instance, Alloc: c.Alloc, Err: err}, named
	case 7, 8:
		name := w.instance(r)
		a, owner := w.current(name, r.next(2) == 0)
		if r.next(4) == 0 || a == "" {
			a = w.alloc(r)
		} else {
			m.ID = owner
		}
		return Exited{MasterID: m.ID, Report: pipes.Exited{Alloc: a, Code: r.next(3) - 1}}, named
	case 9:
		var list []pipes.Started
		for range r.next(4) {
			a := w.alloc(r)
			named[a] = true
			list = append(list, pipes.Started{Alloc: a, Instance: w.instance(r), PID: 1 + r.next(50)})
		}
		return Reconnected{Master: m, Allocs: list}, named
	case 10:
		return MasterLost{MasterID: m.ID, Why: "lost"}, named
	case 11:
		w.now = w.now.Add(time.Duration(r.next(40)) * time.Second)
		return Tick{}, named
	case 12:
		return Drained{Name: m.Name, On: r.next(2) == 0}, named
	default:
		need := []string{"web", "idle"}[r.next(2)]
		var ch *Change
		var err error
		switch r.next(3) {
		case 0:
			ch, err = w.st.PlanScale(need, r.next(4), w.now)
		case 1:
			ch, err = w.st.PlanRestart(need, w.now)
		default:
			ch, err = w.st.PlanScale(need, 2, w.now)
		}
		if err != nil {
			return Tick{}, named
		}
		return Committed{Change: ch}, named
	}
}

// check returns the first broken invariant, or "".
func (w *world) check(ev Event, named map[string]bool) string {
	owner := map[string]string{}
	running := map[string]int{}
	for _, in := range w.st.Insts {
		if in.State.Placed() != (in.Alloc != "" && in.MasterID != "") {
			return fmt.Sprintf("%s is %s with placement %+v", in.Name, in.State, in.Placement)
		}
		if in.Alloc != "" {
			if o, ok := owner[in.Alloc]; ok {
				return fmt.Sprintf("allocation %s places %s and %s", in.Alloc, o, in.Name)
			}
			owner[in.Alloc] = in.Name
		}
		if h := in.Handoff; h != nil {
			if in.State != needs.Running {
				return fmt.Sprintf("%s is %s with a handoff", in.Name, in.State)
			}
			if h.MasterID == in.MasterID {
				return fmt.Sprintf("%s hands off to its own master", in.Name)
			}
			if o, ok := owner[h.Alloc]; ok {
				return fmt.Sprintf("allocation %s places %s and %s's handoff", h.Alloc, o, in.Name)
			}
			owner[h.Alloc] = in.Name
		}
		if in.State == needs.Running && !in.Removing {
			running[in.Need]++
			if n := w.st.Needs[in.Need]; n == nil || in.Index >= n.Instances {
				return fmt.Sprintf("%s runs, not removing, beyond its need's count", in.Name)
			}
		}
	}
	indexed := 0
	for _, m := range w.st.byNeed {
		indexed += len(m)
	}
	for _, in := range w.st.Insts {
		if w.st.byNeed[in.Need][in.Name] != in {
			return fmt.Sprintf("%s missing from its need's index", in.Name)
		}
	}
	filed := len(w.st.handing)
	for _, m := range w.st.byState {
		filed += len(m)
	}
	handing := 0
	for _, in := range w.st.Insts {
		if w.st.byState[in.State][in.Name] != in {
			return fmt.Sprintf("%s (%s) not filed under its state", in.Name, in.State)
		}
		if in.Handoff != nil {
			handing++
			if w.st.handing[in.Name] != in {
				return fmt.Sprintf("%s has a handoff and is not filed so", in.Name)
			}
		}
	}
	perNeed, total := map[string]map[string]int{}, map[string]int{}
	for _, in := range w.st.Insts {
		add := func(id string) {
			if perNeed[in.Need] == nil {
				perNeed[in.Need] = map[string]int{}
			}
			perNeed[in.Need][id]++
			total[id]++
		}
		if in.State.Placed() {
			add(in.MasterID)
		}
		if in.Handoff != nil {
			add(in.Handoff.MasterID)
		}
	}
	if fmt.Sprint(perNeed, total) != fmt.Sprint(w.st.perNeed, w.st.total) {
		return fmt.Sprintf("placement counts %v %v, recounted %v %v", w.st.perNeed, w.st.total, perNeed, total)
	}
	if filed != len(w.st.Insts)+handing {
		return fmt.Sprintf("the state index holds %d entries, want %d", filed, len(w.st.Insts)+handing)
	}
	if indexed != len(w.st.Insts) {
		return fmt.Sprintf("the need index holds %d instances, there are %d", indexed, len(w.st.Insts))
	}
	for need, c := range running {
		if n := w.st.Needs[need]; n == nil || c > n.Instances {
			return fmt.Sprintf("%d instances of %s run", c, need)
		}
	}
	seen := map[string]bool{}
	for _, f := range w.fx.Frames {
		s, ok := f.Body.(*pipes.Stop)
		if !ok {
			continue
		}
		key := f.MasterID + " " + s.Alloc
		if seen[key] {
			return fmt.Sprintf("stop %s sent twice by one %T", key, ev)
		}
		seen[key] = true
		if w.stopped[key] && !named[s.Alloc] {
			return fmt.Sprintf("stop %s sent again by a %T that does not name it", key, ev)
		}
		w.stopped[key] = true
	}
	for _, m := range w.fx.Moves {
		if m.On != "api" && !Allowed(m.From, m.To, m.On) {
			return fmt.Sprintf("%s: %s → %s on %q is not in the table", m.Instance, m.From, m.To, m.On)
		}
	}
	return ""
}

// FuzzLifecycle feeds random sequences of events, refused ones included,
// and checks the invariants after each.
func FuzzLifecycle(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0, 0, 1, 1, 6, 0, 0, 1, 8, 0, 0, 1})
	f.Add([]byte{12, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 2, 1, 0, 1, 1, 6, 0, 0, 1, 10, 0})
	f.Add([]byte{0, 1, 3, 2, 1, 3, 1, 1, 13, 0, 0, 1, 9, 1, 3, 5, 0, 7, 11, 30})
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWorld()
		r := &bytes{b: data}
		for step := 0; r.i < len(r.b) && step < 500; step++ {
			ev, named := w.event(r)
			w.fx.Reset()
			w.st.Step(&w.fx, w.now, ev)
			w.checks = append(w.checks, w.fx.Checks...)
			w.uptime = append(w.uptime, w.fx.Uptime...)
			if bad := w.check(ev, named); bad != "" {
				t.Fatalf("after event %d %T %+v: %s", step, ev, ev, bad)
			}
		}
	})
}
