package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"berth/needs"
)

// TestRangeExhausted checks that an instance that no master can lease ports
// for stays pending and says which range on which master is full.
func TestRangeExhausted(t *testing.T) {
	lan := startLan(t, "")
	m := startMaster(t, lan, "small", 2)
	lan.mustCLI(t, "need", "add", "web", "--instances", "3", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(lan.running(t, "web")) == 2 })
	var st *needs.NeedStatus
	waitFor(t, 10*time.Second, "a reason for the pending instance", func() bool {
		st = lan.need(t, "web")
		return st.Pending == 1 && len(st.Reasons) > 0
	})
	want := fmt.Sprintf("master small: http range %d-%d exhausted", m.http, m.http+1)
	if !strings.Contains(strings.Join(st.Reasons, "\n"), want) {
		t.Errorf("reasons %q do not contain %q", st.Reasons, want)
	}
	if out := lan.mustCLI(t, "need", "show", "web"); !strings.Contains(out, want) {
		t.Errorf("need show does not say why:\n%s", out)
	}
	// Scaling down frees a port: the need is satisfied with what fits.
	lan.mustCLI(t, "need", "scale", "web", "2")
	waitFor(t, 10*time.Second, "nothing pending", func() bool { return lan.need(t, "web").Pending == 0 })
}

// TestUnreachableRejected runs a child that never binds its declared port:
// the lanmanager rejects it after the start deadline, the master stops it,
// and the instance backs off with the reason recorded.
func TestUnreachableRejected(t *testing.T) {
	lan := startLan(t, "", "--start-deadline", "1s")
	m := startMaster(t, lan, "m1", 5)
	lan.mustCLI(t, "need", "add", "mute", "--protocols", "http", "--", "sleep", "600")
	var firstPID int
	waitFor(t, 10*time.Second, "mute.0 to start", func() bool {
		s := lan.services(t)
		if len(s) == 1 && s[0].PID != 0 {
			firstPID = s[0].PID
			return true
		}
		return false
	})
	var in *needs.Instance
	waitFor(t, 20*time.Second, "mute.0 to be rejected", func() bool {
		st := lan.need(t, "mute")
		in = st.InstanceList[0]
		return in.Restarts >= 1
	})
	if !strings.Contains(in.LastExit, "unreachable") {
		t.Errorf("last exit %q does not say the port was unreachable", in.LastExit)
	}
	waitFor(t, 10*time.Second, "the rejected child to be stopped", func() bool { return !alive(firstPID) })
	for _, c := range m.ps(t) {
		if c.PID == firstPID {
			t.Errorf("master still lists the rejected child %d", firstPID)
		}
	}
}
