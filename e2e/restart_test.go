package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLanmanagerRestart kills the lanmanager with SIGKILL while instances
// run, starts it again on the same data directory, and checks that the
// needs are still there and the running children were kept (same pids, no
// restarts).
func TestLanmanagerRestart(t *testing.T) {
	l := startLan(t, "tok")
	startMaster(t, l, "m1", 10)
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(l.running(t, "web")) == 2 })
	before := l.running(t, "web")

	l.proc.cmd.Process.Signal(syscall.SIGKILL)
	<-l.proc.done
	l.proc = startProc(t, l.dir, "lanmanager-2", []string{"BERTH_TOKEN=" + l.token},
		bin.lanmanager, "serve", "--listen", l.addr, "--data", filepath.Join(l.dir, "data"), "--ipc-listen", "off", "--gateway-listen", "off")
	waitFor(t, 20*time.Second, "the master to reconnect and both to run", func() bool {
		out, err := l.cli(t, "master", "ls")
		return err == nil && strings.Contains(out, "connected") && !strings.Contains(out, "disconnected") &&
			len(l.running(t, "web")) == 2
	})
	after := l.running(t, "web")
	for name, s := range before {
		a := after[name]
		if a == nil || a.PID != s.PID || a.Alloc != s.Alloc {
			t.Errorf("%s: before restart pid %d alloc %s, after %+v", name, s.PID, s.Alloc, a)
		}
	}
	for _, in := range l.need(t, "web").InstanceList {
		if in.Restarts != 0 {
			t.Errorf("%s restarted %d times across the lanmanager restart", in.Name, in.Restarts)
		}
	}
}

// TestNoGrandchildLeft removes a need whose child forks a grandchild that
// ignores SIGTERM: nothing of the group may survive.
func TestNoGrandchildLeft(t *testing.T) {
	l := startLan(t, "")
	startMaster(t, l, "m1", 5)
	leader, gpid := addForker(t, l)
	l.mustCLI(t, "need", "rm", "forker")
	waitFor(t, 30*time.Second, "leader and grandchild gone", func() bool { return !alive(leader) && !alive(gpid) })
}
