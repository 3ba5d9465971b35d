package e2e

import (
	"fmt"
	"maps"
	"slices"
	"syscall"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// A master that dies (kill -9, or an upgrade) leaves its children running;
// the next master on the same runtime directory re-adopts every child whose
// pid and start time still match and reports the rest down.

// TestMasterCrashRestart kills a master with SIGKILL while it runs two
// children and starts it again on the same runtime directory: the children
// are re-adopted (same pids and allocations, no restart), the master lists
// them, and their ports stay leased (a third instance gets another one).
func TestMasterCrashRestart(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 4)
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(l.running(t, "web")) == 2 })
	before := l.running(t, "web")

	m.kill9()
	for name, s := range before {
		if !alive(s.PID) {
			t.Fatalf("%s (pid %d) died with its master; children must outlive a master crash", name, s.PID)
		}
	}
	m.restart(t, l)
	waitFor(t, 20*time.Second, "the master to list both children again", func() bool { return len(m.ps(t)) == 2 })
	after := l.running(t, "web")
	for name, s := range before {
		a := after[name]
		if a == nil || a.PID != s.PID || a.Alloc != s.Alloc {
			t.Errorf("%s: before the crash pid %d alloc %s, after %+v; want it re-adopted", name, s.PID, s.Alloc, a)
		}
	}
	for _, c := range m.ps(t) {
		b := before[c.Instance]
		if b == nil || c.PID != b.PID || !maps.Equal(c.Ports, b.Ports) {
			t.Errorf("master ps lists %+v; before the crash %+v", c, b)
		}
	}
	for _, in := range l.need(t, "web").InstanceList {
		if in.Restarts != 0 {
			t.Errorf("%s restarted %d times across the master's restart", in.Name, in.Restarts)
		}
	}
	// The adopted children's ports are still leased: a third instance gets
	// a port neither of them has.
	l.mustCLI(t, "need", "scale", "web", "3")
	waitFor(t, 30*time.Second, "3 running", func() bool { return len(l.running(t, "web")) == 3 })
	third := l.running(t, "web")["web.2"]
	for name, s := range before {
		if s.Ports[needs.HTTP] == third.Ports[needs.HTTP] {
			t.Errorf("web.2 got http port %d, still held by adopted %s", third.Ports[needs.HTTP], name)
		}
	}
}

// TestMasterCrashOrphanGroup: a master crashes, then its child's leader
// dies too, leaving a grandchild that ignores SIGTERM in the child's process
// group. The restarted master cannot adopt the leader; it must still find
// and kill the rest of its group, and the instance runs again.
func TestMasterCrashOrphanGroup(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 4)
	leader, gpid := addForker(t, l)

	m.kill9()
	syscall.Kill(leader, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "the leader to die", func() bool { return !alive(leader) })
	if !alive(gpid) {
		t.Fatal("the grandchild died with its leader; the test needs it alive")
	}
	m.restart(t, l)
	waitFor(t, 20*time.Second, "the orphaned grandchild to be killed", func() bool { return !alive(gpid) })
	waitFor(t, 30*time.Second, "forker.0 to run again with a new pid", func() bool {
		s := l.running(t, "forker")["forker.0"]
		return s != nil && s.PID != leader
	})
}

// portsOf collects every port in a set of children.
func portsOf(children []pipes.ChildInfo) map[int]string {
	out := map[int]string{}
	for _, c := range children {
		for _, p := range c.Ports {
			out[p] = c.Instance
		}
	}
	return out
}

// TestMasterRestart50 runs 50 children on one master and, ten times, kills
// the master with SIGKILL and starts it again. Each round every child must
// be kept (same pid, same allocation, no restart), no instance may run
// twice, and no lease may leak: the ports the master lists, the ports the
// lanmanager lists, the ports that really listen in the range and the
// range's leased count all agree.
func TestMasterRestart50(t *testing.T) {
	const n, rounds, size = 50, 10, 60
	l := startLan(t, "")
	m := startMaster(t, l, "m1", size)
	l.mustCLI(t, "need", "add", "web", "--instances", fmt.Sprint(n), "--protocols", "http", "--", bin.hello)
	waitFor(t, 120*time.Second, "50 running", func() bool { return len(l.running(t, "web")) == n })
	first := l.running(t, "web")

	var adopt, connect []time.Duration
	var kept, dups, leaked int
	for round := range rounds {
		before := l.running(t, "web")
		m.kill9()
		start := time.Now()
		m.restart(t, l)
		connect = append(connect, time.Since(start))
		waitUntil(t, 60*time.Second, fmt.Sprintf("round %d: all 50 re-adopted", round), func() (bool, string) {
			ps := m.ps(t)
			run := l.running(t, "web")
			if len(ps) != n || len(run) != n {
				return false, fmt.Sprintf("master lists %d, lanmanager runs %d", len(ps), len(run))
			}
			for _, c := range ps {
				if b := before[c.Instance]; b == nil || b.PID != c.PID || b.Alloc != c.Alloc {
					return false, fmt.Sprintf("master lists %s as pid %d alloc %s; before: %+v", c.Instance, c.PID, c.Alloc, b)
				}
			}
			return true, ""
		})
		adopt = append(adopt, time.Since(start))

		run := l.running(t, "web")
		for name, b := range before {
			if a := run[name]; a != nil && a.PID == b.PID && a.Alloc == b.Alloc {
				kept++
			} else {
				t.Errorf("round %d: %s was pid %d alloc %s, now %+v", round, name, b.PID, b.Alloc, a)
			}
		}
		real := leaders(m.marker)
		perInstance := map[string]int{}
		for _, p := range real {
			perInstance[p.instance]++
		}
		for name, k := range perInstance {
			if k > 1 {
				dups += k - 1
				t.Errorf("round %d: %s runs %d times", round, name, k)
			}
		}
		if len(real) != n {
			t.Errorf("round %d: %d children really run, want %d", round, len(real), n)
		}
		leaked += leaseCheck(t, l, m, run)
	}
	for _, in := range l.need(t, "web").InstanceList {
		if in.Restarts != 0 {
			t.Errorf("%s restarted %d times over %d master restarts", in.Name, in.Restarts, rounds)
		}
		if f := first[in.Name]; f == nil || f.PID != in.PID {
			t.Errorf("%s: pid %d at the start, %d at the end", in.Name, first[in.Name].PID, in.PID)
		}
	}
	figure(t, "master-restart-50", "rounds", rounds, "children", n, "kept", fmt.Sprintf("%d/%d", kept, n*rounds),
		"duplicates", dups, "leaked_leases", leaked, "readopt_median", ms(median(adopt)), "readopt_runs", durs(adopt),
		"connect_median", ms(median(connect)))
}

// leaseCheck compares the master's ports with the lanmanager's, with the
// ports really listening in the master's http range and with the count the
// range reports leased; it returns how many leases are unaccounted for.
func leaseCheck(t *testing.T, l *lanEnv, m *masterEnv, run map[string]*needs.Instance) int {
	t.Helper()
	psPorts := portsOf(m.ps(t))
	lanPorts := map[int]string{}
	for name, s := range run {
		if s.Master == m.name {
			for _, p := range s.Ports {
				lanPorts[p] = name
			}
		}
	}
	if !maps.Equal(psPorts, lanPorts) {
		t.Errorf("master ps ports %v differ from the lanmanager's %v", psPorts, lanPorts)
	}
	listening := map[int]string{}
	for p := range listeningPorts("self") {
		if m.inRange(needs.HTTP, p) {
			listening[p] = psPorts[p]
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(listening)), slices.Sorted(maps.Keys(psPorts))) {
		t.Errorf("ports listening in %s's http range %v differ from the ones it lists %v", m.name, slices.Sorted(maps.Keys(listening)), slices.Sorted(maps.Keys(psPorts)))
	}
	leaked := 0
	var rec *needs.Master
	waitFor(t, 10*time.Second, "the master's free count to be reported", func() bool {
		rec = l.master(t, m.name)
		return rec != nil && rec.Free != nil
	})
	if leased := m.size - rec.Free[needs.HTTP]; leased != len(psPorts) {
		leaked = leased - len(psPorts)
		t.Errorf("%s's http range has %d ports leased but %d children hold ports", m.name, leased, len(psPorts))
	}
	return leaked
}

// TestMasterDownStale: while a master is down, one of its children exits
// and another's need is removed. Once it is back, neither may leave
// anything running: the exited instance runs again under a new pid and
// the removed need has no process and no service.
func TestMasterDownStale(t *testing.T) {
	l := startLan(t, "", "--stop-grace", "1s")
	m := startMaster(t, l, "m1", 10)
	l.mustCLI(t, "need", "add", "keep", "--protocols", "http", "--", bin.hello)
	l.mustCLI(t, "need", "add", "gone", "--protocols", "http", "--", bin.hello)
	l.mustCLI(t, "need", "add", "adopted", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "3 running", func() bool { return len(l.services(t)) == 3 && len(leaders(m.marker)) == 3 })
	keep := l.running(t, "keep")["keep.0"]
	gone := l.running(t, "gone")["gone.0"]
	adopted := l.running(t, "adopted")["adopted.0"]

	m.kill9()
	syscall.Kill(keep.PID, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "keep.0 to die", func() bool { return !alive(keep.PID) })
	l.mustCLI(t, "need", "rm", "gone")
	m.restart(t, l)

	waitFor(t, 30*time.Second, "keep.0 to run again with a new pid", func() bool {
		s := l.running(t, "keep")["keep.0"]
		return s != nil && s.PID != keep.PID
	})
	waitFor(t, 30*time.Second, "gone.0 to be stopped", func() bool { return !alive(gone.PID) })
	waitFor(t, 30*time.Second, "gone.0's service to go", func() bool { return len(l.running(t, "gone")) == 0 })
	if a := l.running(t, "adopted")["adopted.0"]; a == nil || a.PID != adopted.PID {
		t.Errorf("adopted.0 was pid %d, now %+v; it should have been re-adopted", adopted.PID, a)
	}
	// An adopted child that exits is reported with no known status and
	// placed again.
	syscall.Kill(adopted.PID, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "adopted.0 to run again", func() bool {
		s := l.running(t, "adopted")["adopted.0"]
		return s != nil && s.PID != adopted.PID
	})
	for _, in := range l.need(t, "adopted").InstanceList {
		if in.LastExit != "exited while adopted (status unknown)" {
			t.Errorf("adopted.0's last exit %q; want the adopted child's unknown status", in.LastExit)
		}
	}
	waitFor(t, 10*time.Second, "exactly keep.0 and adopted.0 to run", func() bool {
		real := leaders(m.marker)
		var names []string
		for _, p := range real {
			names = append(names, p.instance)
		}
		slices.Sort(names)
		return slices.Equal(names, []string{"adopted.0", "keep.0"})
	})
	if ps := m.ps(t); len(ps) != 2 {
		t.Errorf("master ps lists %d children, want 2: %+v", len(ps), ps)
	}
}

// TestAdoptedStop: after a master restart, the re-adopted children are
// stopped for good. One ignores SIGTERM, one has forked a grandchild that
// ignores it: nothing of either may be left.
func TestAdoptedStop(t *testing.T) {
	l := startLan(t, "", "--stop-grace", "1s")
	m := startMaster(t, l, "m1", 5)
	l.mustCLI(t, "need", "add", "stubborn", "--", "sh", "-c", `trap "" TERM; exec sleep 600`)
	leader, gpid := addForker(t, l)
	waitFor(t, 20*time.Second, "stubborn.0 to run", func() bool { return len(l.running(t, "stubborn")) == 1 })
	stubborn := l.running(t, "stubborn")["stubborn.0"].PID

	m.kill9()
	m.restart(t, l)
	waitFor(t, 20*time.Second, "both re-adopted", func() bool {
		pids := map[int]bool{}
		for _, c := range m.ps(t) {
			pids[c.PID] = true
		}
		return len(pids) == 2 && pids[stubborn] && pids[leader]
	})
	l.mustCLI(t, "need", "rm", "stubborn")
	l.mustCLI(t, "need", "rm", "forker")
	for what, pid := range map[string]int{"stubborn": stubborn, "forker's leader": leader, "forker's grandchild": gpid} {
		waitFor(t, 30*time.Second, what+" to be gone", func() bool { return !alive(pid) })
	}
	if left := childProcs(m.marker); len(left) != 0 {
		t.Errorf("processes left after stopping the adopted children: %+v", left)
	}
	waitFor(t, 10*time.Second, "no service and no child", func() bool { return len(l.services(t)) == 0 && len(m.ps(t)) == 0 })
}
