package lifecycle

import (
	"slices"
	"strings"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

var (
	t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m1 = MasterRef{ID: "id1", Name: "m1", Address: "10.0.0.1"}
	m2 = MasterRef{ID: "id2", Name: "m2", Address: "10.0.0.2"}
)

var testCfg = Config{StopGrace: 5 * time.Second, StartDeadline: 30 * time.Second, RetryAfter: 2 * time.Second}

// machine is a State with its effects, driven by a test.
type machine struct {
	t   *testing.T
	st  *State
	fx  Effects
	now time.Time
}

// newMachine holds need web (an http port) and need idle (no port), with
// the given instance counts, all pending.
func newMachine(t *testing.T, web, idle int) *machine {
	mc := &machine{t: t, st: New(testCfg, nil, nil, nil), now: t0}
	for _, n := range []*needs.Need{
		{Name: "web", Command: []string{"w"}, Instances: web, Protocols: []needs.Protocol{needs.HTTP}},
		{Name: "idle", Command: []string{"i"}, Instances: idle},
	} {
		ch, err := mc.st.PlanAdd(n, mc.now)
		if err != nil {
			t.Fatal(err)
		}
		mc.step(Committed{Change: ch})
	}
	return mc
}

// step applies ev after resetting the effects; it fails the test on a
// move that the table does not list.
func (mc *machine) step(ev Event) *Effects {
	mc.t.Helper()
	mc.fx.Reset()
	mc.st.Step(&mc.fx, mc.now, ev)
	for _, m := range mc.fx.Moves {
		if m.On != "api" && !Allowed(m.From, m.To, m.On) {
			mc.t.Errorf("%s: %s → %s on %q is not in the table", m.Instance, m.From, m.To, m.On)
		}
	}
	return &mc.fx
}

func (mc *machine) in(name string) *needs.Instance {
	mc.t.Helper()
	in := mc.st.Insts[name]
	if in == nil {
		mc.t.Fatalf("no instance %s", name)
	}
	return in
}

// frames lists the frames of fx as "master type alloc".
func frames(fx *Effects) []string {
	var out []string
	for _, f := range fx.Frames {
		alloc := ""
		switch b := f.Body.(type) {
		case *pipes.Stop:
			alloc = b.Alloc
		case *pipes.AllocRef:
			alloc = b.Alloc
		case *pipes.Grant:
			alloc = b.Alloc
		}
		if f.Err != nil {
			out = append(out, f.MasterID+" error")
			continue
		}
		out = append(out, strings.TrimSpace(f.MasterID+" "+f.Type+" "+alloc))
	}
	return out
}

// run places name on m with alloc and takes it to running.
func (mc *machine) run(name, alloc string, m MasterRef) {
	mc.t.Helper()
	mc.step(Granted{Instance: name, Alloc: alloc, Master: m})
	in := mc.in(name)
	mc.step(Started{Master: m, Report: pipes.Started{Alloc: alloc, Instance: name, PID: 100, Ports: map[needs.Protocol]int{needs.HTTP: 8000}}})
	if n := mc.st.Needs[in.Need]; len(n.Protocols) > 0 {
		mc.step(Checked{Instance: name, Alloc: alloc})
	} else {
		mc.step(UptimeElapsed{Alloc: alloc})
	}
	if in.State != needs.Running {
		mc.t.Fatalf("%s is %s, want running", name, in.State)
	}
}

func wantFrames(t *testing.T, fx *Effects, want ...string) {
	t.Helper()
	if got := frames(fx); !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}
}

// TestTransitions walks every transition of the table, and the events
// that must be refused.
func TestTransitions(t *testing.T) {
	t.Run("grant, check, run", func(t *testing.T) {
		mc := newMachine(t, 1, 0)
		fx := mc.step(Granted{Instance: "web.0", Alloc: "a1", Master: m1})
		wantFrames(t, fx, "id1 grant a1")
		if in := mc.in("web.0"); in.State != needs.Starting || in.Alloc != "a1" || in.Master != "m1" || !fx.Records["web.0"] {
			t.Fatalf("after grant %+v, records %v", in, fx.Records)
		}
		fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "a1", Instance: "web.0", PID: 7, Ports: map[needs.Protocol]int{needs.HTTP: 8000}}})
		if len(fx.Checks) != 1 || fx.Checks[0].Address != m1.Address || fx.Checks[0].Ports[needs.HTTP] != 8000 {
			t.Fatalf("checks %+v, want one on m1's address", fx.Checks)
		}
		// Reported again while its check runs: no second check.
		if fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "a1", Instance: "web.0", PID: 7}}); len(fx.Checks) != 0 {
			t.Errorf("a second report started a second check")
		}
		fx = mc.step(Checked{Instance: "web.0", Alloc: "a1"})
		wantFrames(t, fx, "id1 approve a1")
		if mc.in("web.0").State != needs.Running {
			t.Errorf("state %s, want running", mc.in("web.0").State)
		}
	})
	t.Run("refused grants", func(t *testing.T) {
		mc := newMachine(t, 2, 0)
		mc.step(Granted{Instance: "web.0", Alloc: "a1", Master: m1})
		for _, g := range []Granted{
			{Instance: "web.0", Alloc: "a2", Master: m2}, // not pending any more
			{Instance: "web.1", Alloc: "a1", Master: m2}, // allocation id taken
			{Instance: "web.9", Alloc: "a3", Master: m2}, // no such instance
			{Instance: "web.1", Alloc: "a4", Master: m2, Handoff: true},
		} {
			if fx := mc.step(g); !fx.Empty() {
				t.Errorf("%+v: effects %+v, want none", g, fx)
			}
		}
	})
	t.Run("stale and foreign reports", func(t *testing.T) {
		mc := newMachine(t, 2, 0)
		mc.run("web.0", "a1", m1)
		before := *mc.in("web.0")
		fx := mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "old", Instance: "web.0", PID: 9}})
		wantFrames(t, fx, "id1 stop old")
		fx = mc.step(Started{Master: m2, Report: pipes.Started{Alloc: "a1", Instance: "web.0", PID: 9}})
		wantFrames(t, fx, "id2 stop a1")
		for _, ev := range []Event{
			Exited{MasterID: m1.ID, Report: pipes.Exited{Alloc: "old", Code: 1}},
			Exited{MasterID: m2.ID, Report: pipes.Exited{Alloc: "a1", Code: 1}},
			Checked{Instance: "web.0", Alloc: "old", Err: "refused"},
			Ready{MasterID: m2.ID, Alloc: "a1"},
			UptimeElapsed{Alloc: "a1"},
		} {
			if fx := mc.step(ev); len(fx.Records) != 0 || len(fx.Frames) != 0 {
				t.Errorf("%T %+v: effects %+v, want none", ev, ev, fx)
			}
		}
		if in := mc.in("web.0"); in.State != before.State || in.Alloc != before.Alloc || in.Failures != 0 {
			t.Errorf("web.0 changed by stale reports: %+v", in)
		}
		fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "a1", Instance: "web.0", Address: "10.9.9.9"}})
		wantFrames(t, fx, "id1 error")
		// A report that names the allocation of another instance: refused,
		// and the allocation is not stopped on its word.
		mc.run("web.1", "b1", m1)
		fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "b1", Instance: "web.0", PID: 3}})
		wantFrames(t, fx, "id1 error")
		if in := mc.in("web.1"); in.State != needs.Running || in.Alloc != "b1" {
			t.Errorf("web.1 after a confused report: %+v", in)
		}
	})
	t.Run("rejected, backoff, due", func(t *testing.T) {
		mc := newMachine(t, 1, 0)
		mc.step(Granted{Instance: "web.0", Alloc: "a1", Master: m1})
		mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "a1", Instance: "web.0", PID: 7, Ports: map[needs.Protocol]int{needs.HTTP: 1}}})
		fx := mc.step(Checked{Instance: "web.0", Alloc: "a1", Err: "port 1 unreachable"})
		wantFrames(t, fx, "id1 stop a1")
		in := mc.in("web.0")
		if in.State != needs.Backoff || in.Failures != 1 || in.Alloc != "" || in.FailedOn != m1.ID || !in.NextAttempt.After(mc.now) {
			t.Fatalf("after rejection %+v", in)
		}
		fx = mc.step(Tick{})
		if in.State != needs.Backoff || !fx.Due.Equal(in.NextAttempt) {
			t.Errorf("tick before the back-off: %s, due %v want %v", in.State, fx.Due, in.NextAttempt)
		}
		mc.now = in.NextAttempt
		mc.step(Tick{})
		if in.State != needs.Pending {
			t.Errorf("tick at the back-off: %s, want pending", in.State)
		}
	})
	t.Run("exits", func(t *testing.T) {
		mc := newMachine(t, 1, 1)
		mc.run("web.0", "a1", m1)
		mc.run("idle.0", "b1", m2)
		fx := mc.step(Exited{MasterID: m1.ID, Report: pipes.Exited{Alloc: "a1", Code: 3}})
		if in := mc.in("web.0"); in.State != needs.Backoff || in.LastExit != "exit code 3" || in.Restarts != 1 || !fx.ClearRetries {
			t.Errorf("after exit %+v", in)
		}
		mc.step(Exited{MasterID: m2.ID, Report: pipes.Exited{Alloc: "b1", Signal: "SIGKILL", Code: -1}})
		if in := mc.in("idle.0"); in.State != needs.Backoff || in.LastExit != "signal SIGKILL" {
			t.Errorf("after a kill %+v", in)
		}
	})
	t.Run("oom-killed", func(t *testing.T) {
		mc := newMachine(t, 1, 1)
		mc.run("web.0", "a1", m1)
		mc.run("idle.0", "b1", m2)
		mc.step(Exited{MasterID: m1.ID, Report: pipes.Exited{Alloc: "a1", Signal: "SIGKILL", Code: -1, OOMKilled: true, MemoryLimit: 256 << 20}})
		in := mc.in("web.0")
		if in.State != needs.Backoff || in.LastExit != "oom-killed (memory 256M)" || in.Reason != "exited: oom-killed (memory 256M)" ||
			in.Failures != 1 || !in.NextAttempt.After(mc.now) {
			t.Errorf("after an OOM kill %+v", in)
		}
		mc.step(Exited{MasterID: m2.ID, Report: pipes.Exited{Alloc: "b1", Code: 1, OOMKilled: true, MemoryLimit: 1 << 30}})
		if in := mc.in("idle.0"); in.LastExit != "exit code 1 after a process was oom-killed (memory 1G)" {
			t.Errorf("after a grandchild's OOM kill %+v", in)
		}
	})
	t.Run("ready before started, and uptime", func(t *testing.T) {
		mc := newMachine(t, 0, 2)
		mc.step(Granted{Instance: "idle.0", Alloc: "b1", Master: m1})
		mc.step(Ready{MasterID: m1.ID, Alloc: "b1"})
		fx := mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "b1", Instance: "idle.0", PID: 5}})
		wantFrames(t, fx, "id1 approve b1")
		mc.step(Granted{Instance: "idle.1", Alloc: "b2", Master: m1})
		fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "b2", Instance: "idle.1", PID: 6}})
		if !slices.Equal(fx.Uptime, []string{"b2"}) || mc.in("idle.1").State != needs.Starting {
			t.Fatalf("uptime %v, state %s", fx.Uptime, mc.in("idle.1").State)
		}
		mc.step(UptimeElapsed{Alloc: "b2"})
		if mc.in("idle.1").State != needs.Running {
			t.Errorf("after the uptime: %s", mc.in("idle.1").State)
		}
		if fx := mc.step(UptimeElapsed{Alloc: "b2"}); !fx.Empty() {
			t.Errorf("a second uptime event did something: %+v", fx)
		}
	})
	t.Run("start deadline", func(t *testing.T) {
		mc := newMachine(t, 1, 0)
		mc.step(Granted{Instance: "web.0", Alloc: "a1", Master: m1})
		mc.now = mc.now.Add(testCfg.StartDeadline)
		fx := mc.step(Tick{})
		wantFrames(t, fx, "id1 stop a1")
		if in := mc.in("web.0"); in.State != needs.Backoff || !strings.Contains(in.Reason, "did not start it") {
			t.Errorf("after the deadline %+v", in)
		}
	})
	t.Run("master lost and reconnected", func(t *testing.T) {
		mc := newMachine(t, 3, 0)
		mc.run("web.0", "a0", m1)
		mc.run("web.1", "a1", m1)
		mc.run("web.2", "a2", m2)
		fx := mc.step(Reconnected{Master: m1, Allocs: []pipes.Started{
			{Alloc: "a0", Instance: "web.0", PID: 100}, {Alloc: "zz", Instance: "web.9", PID: 1}}})
		wantFrames(t, fx, "id1 approve a0", "id1 stop zz")
		if in := mc.in("web.1"); in.State != needs.Pending || in.Failures != 0 || in.Alloc != "" {
			t.Errorf("web.1, which m1 no longer runs: %+v", in)
		}
		mc.step(MasterLost{MasterID: m2.ID, Why: "lost"})
		if in := mc.in("web.2"); in.State != needs.Pending || in.Failures != 0 || in.Reason != "lost" {
			t.Errorf("web.2 after its master was lost: %+v", in)
		}
		if in := mc.in("web.0"); in.State != needs.Running {
			t.Errorf("web.0 on m1: %s", in.State)
		}
	})
	t.Run("scale down and removal", func(t *testing.T) {
		mc := newMachine(t, 3, 0)
		mc.run("web.0", "a0", m1)
		mc.run("web.1", "a1", m1)
		ch, err := mc.st.PlanScale("web", 1, mc.now)
		if err != nil {
			t.Fatal(err)
		}
		if in := mc.in("web.1"); in.State != needs.Running {
			t.Fatal("PlanScale changed the state")
		}
		fx := mc.step(Committed{Change: ch})
		wantFrames(t, fx, "id1 stop a1")
		if _, ok := mc.st.Insts["web.2"]; ok {
			t.Error("pending web.2 kept after the scale-down")
		}
		if in := mc.in("web.1"); in.State != needs.Stopping || !in.Removing {
			t.Errorf("web.1 %+v", in)
		}
		// Reported again while stopping: told to stop again.
		fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "a1", Instance: "web.1", PID: 100}})
		wantFrames(t, fx, "id1 stop a1")
		fx = mc.step(Exited{MasterID: m1.ID, Report: pipes.Exited{Alloc: "a1", Code: 0}})
		if _, ok := mc.st.Insts["web.1"]; ok || len(fx.Removed) != 1 || fx.Records["web.1"] {
			t.Errorf("web.1 not dropped once stopped: removed %v records %v", fx.Removed, fx.Records)
		}
		if _, err := mc.st.PlanScale("nope", 1, mc.now); err == nil {
			t.Error("PlanScale of an unknown need succeeded")
		}
		ch, err = mc.st.PlanRemove("web", mc.now)
		if err != nil {
			t.Fatal(err)
		}
		mc.step(Committed{Change: ch})
		// An event for the removed need's instance: stopped again, nothing else.
		fx = mc.step(Started{Master: m1, Report: pipes.Started{Alloc: "a0", Instance: "web.0", PID: 100}})
		wantFrames(t, fx, "id1 stop a0")
		if _, ok := mc.st.Needs["web"]; ok {
			t.Error("need web still there")
		}
	})
	t.Run("drain hands off, start before stop", func(t *testing.T) {
		mc := newMachine(t, 1, 0)
		mc.run("web.0", "a0", m1)
		mc.step(Drained{Name: "m1", On: true})
		if !mc.st.WantsHandoff(mc.in("web.0")) {
			t.Fatal("web.0 on a draining master wants no handoff")
		}
		if fx := mc.step(Granted{Instance: "web.0", Alloc: "h1", Master: m1, Handoff: true}); len(fx.Frames) != 0 {
			t.Error("a replacement granted on the draining master itself")
		}
		fx := mc.step(Granted{Instance: "web.0", Alloc: "h1", Master: m2, Handoff: true})
		wantFrames(t, fx, "id2 grant h1")
		mc.step(Started{Master: m2, Report: pipes.Started{Alloc: "h1", Instance: "web.0", PID: 200, Ports: map[needs.Protocol]int{needs.HTTP: 9000}}})
		if in := mc.in("web.0"); in.State != needs.Running || in.Alloc != "a0" {
			t.Fatalf("web.0 moved before its replacement was approved: %+v", in)
		}
		fx = mc.step(Checked{Instance: "web.0", Alloc: "h1"})
		wantFrames(t, fx, "id2 approve h1", "id1 stop a0")
		if in := mc.in("web.0"); in.State != needs.Running || in.Alloc != "h1" || in.Master != "m2" || in.Handoff != nil {
			t.Errorf("after the handoff %+v", in)
		}
		if r, ok := mc.st.Retiring["a0"]; !ok || r.MasterID != m1.ID {
			t.Errorf("retiring %v", mc.st.Retiring)
		}
		fx = mc.step(Exited{MasterID: m1.ID, Report: pipes.Exited{Alloc: "a0", Code: 0}})
		if len(mc.st.Retiring) != 0 || len(fx.Records) != 0 {
			t.Errorf("the old allocation's exit: retiring %v records %v", mc.st.Retiring, fx.Records)
		}
	})
	t.Run("rebalance move", func(t *testing.T) {
		mc := newMachine(t, 2, 0)
		mc.run("web.0", "a0", m1)
		mc.run("web.1", "a1", m1)
		if mc.st.WantsHandoff(mc.in("web.0")) {
			t.Fatal("wants a handoff before any move was asked")
		}
		mc.st.Moving["web.1"] = m1.ID
		if !mc.st.WantsHandoff(mc.in("web.1")) || mc.st.WantsHandoff(mc.in("web.0")) {
			t.Fatal("the move is not the one wanted")
		}
		mc.step(Granted{Instance: "web.1", Alloc: "h1", Master: m2, Handoff: true})
		if in := mc.in("web.1"); !strings.HasPrefix(in.Reason, "rebalancing") {
			t.Errorf("reason %q", in.Reason)
		}
		mc.step(Started{Master: m2, Report: pipes.Started{Alloc: "h1", Instance: "web.1", PID: 9, Ports: map[needs.Protocol]int{needs.HTTP: 1}}})
		fx := mc.step(Checked{Instance: "web.1", Alloc: "h1"})
		wantFrames(t, fx, "id2 approve h1", "id1 stop a1")
		if len(fx.Handoffs) != 1 || !fx.Handoffs[0].Moved || fx.Handoffs[0].FromID != m1.ID {
			t.Errorf("handoff ends %+v", fx.Handoffs)
		}
		if st := fx.Frames[1].Body.(*pipes.Stop); !strings.HasPrefix(st.Reason, "rebalanced") {
			t.Errorf("stop reason %q", st.Reason)
		}
		if mc.st.WantsHandoff(mc.in("web.1")) {
			t.Error("still wants a handoff once moved off the master it was to leave")
		}
		// A move whose replacement dies ends, unmoved.
		mc.st.Moving["web.0"] = m1.ID
		mc.step(Granted{Instance: "web.0", Alloc: "h2", Master: m2, Handoff: true})
		fx = mc.step(Exited{MasterID: m2.ID, Report: pipes.Exited{Alloc: "h2", Code: 1}})
		if len(fx.Handoffs) != 1 || fx.Handoffs[0].Moved || mc.in("web.0").Alloc != "a0" {
			t.Errorf("handoff ends %+v, web.0 %+v", fx.Handoffs, mc.in("web.0"))
		}
	})
	t.Run("undrain cancels the replacement", func(t *testing.T) {
		mc := newMachine(t, 1, 0)
		mc.run("web.0", "a0", m1)
		mc.step(Drained{Name: "m1", On: true})
		mc.step(Granted{Instance: "web.0", Alloc: "h1", Master: m2, Handoff: true})
		fx := mc.step(Drained{Name: "m1", On: false})
		wantFrames(t, fx, "id2 stop h1")
		if in := mc.in("web.0"); in.Handoff != nil || in.Alloc != "a0" {
			t.Errorf("after undrain %+v", in)
		}
	})
	t.Run("exit moves to the replacement", func(t *testing.T) {
		mc := newMachine(t, 1, 0)
		mc.run("web.0", "a0", m1)
		mc.step(Drained{Name: "m1", On: true})
		mc.step(Granted{Instance: "web.0", Alloc: "h1", Master: m2, Handoff: true})
		mc.step(Exited{MasterID: m1.ID, Report: pipes.Exited{Alloc: "a0", Code: 1}})
		if in := mc.in("web.0"); in.State != needs.Starting || in.Alloc != "h1" || in.Handoff != nil || in.Failures != 0 {
			t.Errorf("after the old child exited %+v", in)
		}
	})
}

// TestDiagramMatchesDocs: docs/architecture.md shows the diagram drawn
// from Table.
func TestDiagramMatchesDocs(t *testing.T) {
	doc, err := readArchitecture()
	if err != nil {
		t.Skip(err)
	}
	want := "```mermaid\n" + Diagram() + "```"
	if !strings.Contains(doc, want) {
		t.Errorf("docs/architecture.md does not hold the state diagram drawn from Table; put this in it:\n%s", want)
	}
}

func TestAllowed(t *testing.T) {
	for _, tr := range Table {
		if !Allowed(tr.From, tr.To, tr.On) {
			t.Errorf("%+v not allowed", tr)
		}
	}
	if Allowed(needs.Pending, needs.Running, "grant") {
		t.Error("pending → running allowed")
	}
	if got := Diagram(); !strings.Contains(got, "pending --> starting: grant") {
		t.Errorf("diagram:\n%s", got)
	}
}
