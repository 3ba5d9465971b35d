package main

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"berth/internal/leakcheck"
	"berth/lan"
	"berth/needs"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }

// bidWindow is the lanmanager's bid window in these tests. The default,
// 300 ms, is shorter than a bid's round trip once the race detector slows
// everything down some tenfold, and then offer rounds close before their
// bids arrive and nothing is placed: the collapse docs/scale.md describes,
// which the simulator measures at full speed. These tests check what is
// placed, not how fast; rounds close as soon as every master has bid, so a
// longer window costs nothing when bids are on time.
const bidWindow = 2 * time.Second

// runSmall runs the scenario against an in-process lanmanager with a token.
func runSmall(t *testing.T, cfg Config, ttl time.Duration) *Report {
	t.Helper()
	token := strings.Repeat("5e", 32)
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Token: token, MasterTTL: ttl,
		BidWindow: bidWindow,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	began := time.Now()
	rep, err := Run(t.Context(), cfg, Target{Addr: srv.Addr(), Token: token, Shared: true})
	if rep != nil {
		var b strings.Builder
		rep.Print(&b)
		t.Logf("run took %s:\n%s", time.Since(began).Round(time.Millisecond), b.String())
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

// checkOutcome fails on what the run found wrong, and checks what a run
// without failures must show: each instance granted once, nothing stopped,
// the lost masters' instances placed again no sooner than the TTL allows.
func checkOutcome(t *testing.T, cfg Config, rep *Report) {
	t.Helper()
	for _, v := range rep.Violations {
		t.Errorf("violation: %s", v)
	}
	for _, f := range rep.Failures {
		t.Errorf("failure: %s", f)
	}
	if rep.ViolationCount+rep.FailureCount > 0 {
		t.Fatalf("%d violations, %d failures", rep.ViolationCount, rep.FailureCount)
	}
	if len(rep.Marks) != 3 {
		t.Errorf("marks %+v, want 10, 50 and 90 %%", rep.Marks)
	}
	for i, m := range rep.Marks {
		if m.At > rep.Place || (i > 0 && (m.At < rep.Marks[i-1].At || m.Percent <= rep.Marks[i-1].Percent)) {
			t.Errorf("marks %+v: out of order, or after all ran (%s)", rep.Marks, rep.Place)
		}
	}
	if rep.PlaceGrants != cfg.Instances {
		t.Errorf("%d grants before the loss, want one per instance, %d", rep.PlaceGrants, cfg.Instances)
	}
	if rep.Grants != cfg.Instances+rep.LostInstances {
		t.Errorf("%d grants in all, want one per instance and one per instance of the lost masters, %d", rep.Grants, cfg.Instances+rep.LostInstances)
	}
	if rep.Stops != 0 || rep.Stray != 0 {
		t.Errorf("%d stops and %d messages about unknown allocations, want none: nothing failed", rep.Stops, rep.Stray)
	}
	if rep.LostInstances == 0 {
		t.Errorf("the %d cut-off masters held no instance: the loss proved nothing", cfg.Lose)
	}
	// The lanmanager counts the TTL from when it last heard a master,
	// which may be up to a heartbeat (a fifth of the TTL) before the cut.
	if earliest := rep.TTL * 4 / 5; rep.Recover < earliest {
		t.Errorf("the lost instances ran elsewhere %s after the cut, before the TTL (%s) less a heartbeat", rep.Recover, rep.TTL)
	}
	if rep.PortChecks < int64(cfg.Instances+rep.LostInstances) {
		t.Errorf("%d port checks answered, want at least one per placement (%d)", rep.PortChecks, cfg.Instances+rep.LostInstances)
	}
	calls, events := 0, 0
	for _, ops := range rep.API {
		for _, d := range ops {
			calls += d.N
		}
	}
	for _, d := range rep.Events {
		events += d.N
	}
	if calls == 0 || events < cfg.Instances {
		t.Errorf("%d API calls and %d events measured, want some calls and at least one event per instance", calls, events)
	}
}

// smallConfig is the CI size of the full run.
func smallConfig() Config {
	return Config{Masters: 50, Instances: 2000, PerNeed: 100, Protocols: []needs.Protocol{needs.HTTP}, Lose: 5,
		BidCost: 100 * time.Microsecond, PortPool: 16, APIInterval: 20 * time.Millisecond, APICalls: 10000,
		PlaceTimeout: 3 * time.Minute, RecoverTimeout: time.Minute}
}

// TestSimulation is the full run at CI size: 50 masters, 2,000 instances,
// 5 masters cut off at once with their connections left up (no FIN).
// Every instance must be placed exactly once, the lanmanager's services
// must match what the masters run, and every instance of the lost masters
// must run elsewhere.
func TestSimulation(t *testing.T) {
	cfg := smallConfig()
	checkOutcome(t, cfg, runSmall(t, cfg, 3*time.Second))
}

// TestSimulationClosedLinks cuts the masters off by closing their links.
func TestSimulationClosedLinks(t *testing.T) {
	cfg := smallConfig()
	cfg.Masters, cfg.Instances, cfg.Lose, cfg.CloseLinks = 10, 300, 2, true
	checkOutcome(t, cfg, runSmall(t, cfg, 3*time.Second))
}
