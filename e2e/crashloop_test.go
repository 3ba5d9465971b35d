package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/needs"
)

// attempt is one start of a crash-looping child, as the child wrote it.
type attempt struct {
	at     time.Time
	master string // the marker of the master that started it
}

// readAttempts parses the lines "UNIXNANO MARKER" the child appends.
func readAttempts(t *testing.T, path string) []attempt {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []attempt
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue // a line being written
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("attempt line %q: %v", line, err)
		}
		out = append(out, attempt{at: time.Unix(0, ns), master: f[1]})
	}
	return out
}

// TestCrashLoopPolicy runs a child that exits at once under an explicit
// restart policy on two masters. The delays between attempts must be at
// least the policy's (they are printed side by side), the first failures
// are retried on the same master and later ones move, the API shows the
// back-off, and `lanmanager need restart` retries at once, before the
// scheduled attempt, with the failure count reset.
func TestCrashLoopPolicy(t *testing.T) {
	l := startLan(t, "")
	m1 := startMaster(t, l, "m1", 5)
	m2 := startMaster(t, l, "m2", 5)
	masterOf := map[string]string{m1.marker: "m1", m2.marker: "m2"}
	log := filepath.Join(t.TempDir(), "attempts")
	policy := &needs.RestartPolicy{LocalAttempts: 2, Delay: needs.Duration(300 * time.Millisecond), Factor: 3,
		MaxDelay: needs.Duration(10 * time.Second)}
	l.mustCLI(t, "need", "add", "crash", "--restart-local", "2", "--restart-delay", "300ms", "--restart-factor", "3",
		"--restart-max-delay", "10s", "--", "sh", "-c", fmt.Sprintf(`echo "$(date +%%s%%N) $%s" >> %s; exit 3`, e2eMarkerEnv, log))

	// Four failures: delays 300ms, 900ms, 2.7s between them, then 8.1s
	// scheduled.
	var in *needs.Instance
	waitUntil(t, 60*time.Second, "crash.0 to fail 4 times", func() (bool, string) {
		in = l.need(t, "crash").InstanceList[0]
		return in.Failures == 4 && in.State == needs.Backoff, fmt.Sprintf("failures %d state %s", in.Failures, in.State)
	})
	atts := readAttempts(t, log)
	if len(atts) != 4 {
		t.Fatalf("the child started %d times for 4 failures", len(atts))
	}
	var want, got []time.Duration
	for i := 1; i < len(atts); i++ {
		p, o := policy.Backoff(i), atts[i].at.Sub(atts[i-1].at)
		want, got = append(want, p), append(got, o)
		// Start to start includes the child's run and the placement, so it
		// is never shorter than the policy's delay (the 5 ms allow for the
		// child's own clock reading).
		if o < p-5*time.Millisecond {
			t.Errorf("attempt %d came %s after attempt %d; the policy's delay is %s", i+1, ms(o), i, p)
		}
	}
	if d := in.NextAttempt.Sub(in.Since); d < policy.Backoff(4)-time.Millisecond || d > policy.Backoff(4)+time.Millisecond {
		t.Errorf("next attempt %s after failure 4, want %s", d, policy.Backoff(4))
	}
	if in.LastExit != "exit code 3" {
		t.Errorf("last exit %q, want exit code 3", in.LastExit)
	}
	// LocalAttempts 2: failures 1 and 2 are retried where they happened,
	// the third moves to the other master.
	var where []string
	for _, a := range atts {
		where = append(where, masterOf[a.master])
	}
	if where[0] != where[1] || where[1] != where[2] || where[3] == where[2] {
		t.Errorf("attempts ran on %v; with --restart-local 2 the first three run on one master and the fourth on the other", where)
	}
	figure(t, "crashloop", "policy", "delay=300ms,factor=3,max=10s,local=2", "policy_delays", durs(want),
		"observed_delays", durs(got), "masters", strings.Join(where, ","))

	// need restart: retried now, well before the 8.1 s back-off is over.
	scheduled := in.NextAttempt
	asked := time.Now()
	out := l.mustCLI(t, "need", "restart", "crash", "--json")
	var st needs.NeedStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Name != "crash" {
		t.Errorf("need restart --json answered %q (%v); want the need's status", out, err)
	}
	waitFor(t, 20*time.Second, "a fifth attempt", func() bool { return len(readAttempts(t, log)) >= 5 })
	fifth := readAttempts(t, log)[4].at
	if !fifth.Before(scheduled) {
		t.Errorf("after need restart the next attempt came at %s, not before the scheduled %s", fifth.Format(time.StampMilli), scheduled.Format(time.StampMilli))
	}
	// Counted from zero: in back-off, the failures are the attempts since
	// the restart. Under load a sixth attempt may have come and failed
	// (its back-off is 300 ms) before the state is read, so the attempts
	// are counted around the read, and a read they moved across is taken
	// again.
	// The back-off read must be the one of the last attempt logged: it
	// began after that attempt started.
	var since int
	waitUntil(t, 20*time.Second, "the failures after need restart to be counted from zero", func() (bool, string) {
		before := readAttempts(t, log)
		in = l.need(t, "crash").InstanceList[0]
		after := readAttempts(t, log)
		since = len(after) - 4
		last := after[len(after)-1].at
		return len(before) == len(after) && in.State == needs.Backoff && in.Since.After(last),
			fmt.Sprintf("state %s since %s failures %d, attempts since the restart %d", in.State, in.Since.Format(time.StampMilli), in.Failures, since)
	})
	if in.Failures != since {
		t.Errorf("after need restart and %d more failures, failures = %d, want %d (reset by the restart)", since, in.Failures, since)
	}
	figure(t, "need-restart", "scheduled_in", ms(scheduled.Sub(asked)), "retried_after", ms(fifth.Sub(asked)))

	// An unknown need is an error naming it.
	if _, err := l.cli(t, "need", "restart", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("need restart nope: %v; want an error naming it", err)
	}
}
