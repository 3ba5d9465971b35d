package e2e

import (
	"syscall"
	"testing"
	"time"
)

// TestMasterCrashRestart kills a master with SIGKILL while it runs two
// children, starts it again on the same runtime directory, and checks that
// the children it left behind are stopped (this version does not re-adopt
// them), that the instances run again exactly once each, and that the old
// ports were reclaimed and handed out again.
func TestMasterCrashRestart(t *testing.T) {
	l := startLan(t, "", "--master-grace", "2s")
	m := startMaster(t, l, "m1", 24900, 24950, 4)
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(l.running(t, "web")) == 2 })
	before := l.running(t, "web")

	m.proc.cmd.Process.Kill()
	<-m.proc.done
	for name, s := range before {
		if !alive(s.PID) {
			t.Fatalf("%s (pid %d) died with its master; children must outlive a master crash", name, s.PID)
		}
	}

	m.proc = startProc(t, m.dir, "master-m1-2", nil, bin.master, "run", "--config", m.config)
	for name, s := range before {
		waitFor(t, 20*time.Second, name+"'s orphan to be stopped", func() bool { return !alive(s.PID) })
	}
	waitFor(t, 30*time.Second, "2 running again with new pids", func() bool {
		run := l.running(t, "web")
		if len(run) != 2 {
			return false
		}
		for name, s := range run {
			if s.PID == before[name].PID {
				return false
			}
		}
		return true
	})
	children := m.ps(t)
	if len(children) != 2 {
		t.Fatalf("master ps lists %d children after restart, want 2: %+v", len(children), children)
	}
	// The range has 4 ports; both old ones must have been reclaimed, so the
	// new children got ports from the low end again.
	for _, c := range children {
		for p, port := range c.Ports {
			if !m.inRange(p, port) || port >= m.http+2 {
				t.Errorf("%s got %s port %d: the crashed run's leases were not reclaimed", c.Instance, p, port)
			}
		}
	}
	if n := len(l.services(t)); n != 2 {
		t.Errorf("%d services after settling, want 2", n)
	}
}

// TestMasterCrashOrphanGroup: a master crashes, then its child's leader
// dies too, leaving a grandchild that ignores SIGTERM in the child's process
// group. The restarted master must still find and kill it.
func TestMasterCrashOrphanGroup(t *testing.T) {
	l := startLan(t, "", "--master-grace", "2s")
	m := startMaster(t, l, "m1", 25200, 25250, 4)
	leader, gpid := addForker(t, l)

	m.proc.cmd.Process.Kill()
	<-m.proc.done
	syscall.Kill(leader, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "the leader to die", func() bool { return !alive(leader) })
	if !alive(gpid) {
		t.Fatal("the grandchild died with its leader; the test needs it alive")
	}
	m.proc = startProc(t, m.dir, "master-m1-2", nil, bin.master, "run", "--config", m.config)
	waitFor(t, 20*time.Second, "the orphaned grandchild to be killed", func() bool { return !alive(gpid) })
}
