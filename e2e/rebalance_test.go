package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// TestRebalance: instances placed while only m1 ran move to m2, when asked
// (`need rebalance`) or by themselves (`serve --auto-rebalance`), until
// each master runs half; each replacement starts before its old child
// stops, so at no moment (polled every 5 ms, through the API and in the
// real process table) does the need run fewer than it asked for.
func TestRebalance(t *testing.T) {
	for _, auto := range []bool{false, true} {
		name := "asked"
		if auto {
			name = "auto"
		}
		t.Run(name, func(t *testing.T) { testRebalance(t, auto) })
	}
}

func testRebalance(t *testing.T, auto bool) {
	const want = 4
	args := []string{"--stop-grace", "2s"}
	if auto {
		args = append(args, "--auto-rebalance", "--rebalance-after", "1s")
	}
	l := startLan(t, "", args...)
	m1 := startMaster(t, l, "m1", 10)
	client := &lan.Client{Addr: "http://" + l.addr, Token: l.token}
	l.mustCLI(t, "need", "add", "web", "--instances", fmt.Sprint(want), "--protocols", "http", "--", bin.hello)
	waitFor(t, 60*time.Second, "4 running on m1", func() bool {
		return len(l.running(t, "web")) == want && len(leaders(m1.marker)) == want
	})
	m2 := startMaster(t, l, "m2", 10)
	start := time.Now()
	if !auto {
		out := l.mustCLI(t, "need", "rebalance", "web")
		if w := "need web: 2 to move (m1→m2 ×2), one at a time; now m1 4, m2 0"; !strings.Contains(out, w) {
			t.Errorf("need rebalance web:\n%s\nwant %q", out, w)
		}
	}

	minAPI, minReal := want, want
	var took time.Duration
	deadline := time.Now().Add(90 * time.Second)
	polls := 0
	for took == 0 {
		polls++
		if time.Now().After(deadline) {
			t.Fatalf("not rebalanced after 90 s: m1 runs %d, m2 %d", len(leaders(m1.marker)), len(leaders(m2.marker)))
		}
		svcs, err := client.Services(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		running, handoffs := 0, 0
		per := map[string]int{}
		for _, s := range svcs {
			if s.Need == "web" && s.State == needs.Running {
				running++
				per[s.Master]++
			}
			if s.Handoff != nil {
				handoffs++
			}
		}
		on1, on2 := len(leaders(m1.marker)), len(leaders(m2.marker))
		minAPI, minReal = min(minAPI, running), min(minReal, on1+on2)
		if handoffs == 0 && per["m1"] == want/2 && per["m2"] == want/2 && on1 == want/2 && on2 == want/2 {
			took = time.Since(start)
		}
		time.Sleep(5 * time.Millisecond) // the polling interval; the loop ends on the state, bounded by the deadline
	}
	if minAPI < want || minReal < want {
		t.Errorf("while rebalancing web ran as few as %d instances by the lanmanager and %d processes; want never below %d", minAPI, minReal, want)
	}
	figure(t, "rebalance", "auto", auto, "instances", want, "moved", want/2, "min_running_reported", minAPI, "min_processes", minReal,
		"rebalance_time", ms(took), "polls", polls)

	out := l.mustCLI(t, "need", "rebalance", "--all")
	if !strings.Contains(out, "need web: nothing to move (even") {
		t.Errorf("need rebalance --all once even:\n%s", out)
	}
	if _, err := l.cli(t, "need", "rebalance"); err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), "--all") {
		t.Errorf("need rebalance without NAME: %v; want exit 2 naming --all", err)
	}
}
