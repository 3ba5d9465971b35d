package master

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/freeports"
	"berth/needs"
	"berth/pipes"
	"berth/spawn"
)

// TestBidRefusesUnenforceableLimits: a master bids for a need with limits
// only if it can enforce every one of them; otherwise its bid says which
// limit and why (the lanmanager shows that reason for pending instances,
// as for any refused bid).
func TestBidRefusesUnenforceableLimits(t *testing.T) {
	base := freeports.Block(t, 2)
	cfg := DefaultConfig()
	cfg.LanManagerAddress = fmt.Sprintf("127.0.0.1:%d", freeports.Block(t, 1)) // nobody: no offer ever arrives
	cfg.Name, cfg.AdvertiseAddress = "m1", "127.0.0.1"
	cfg.PortRangeStart = map[needs.Protocol]int{needs.TCP: base, needs.HTTP: base + 1}
	cfg.PortRangeSize = 1
	dir, err := os.MkdirTemp("", "bl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.RuntimeDirectory = filepath.Join(dir, "rt")
	a, err := Open(t.Context(), Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	offer := func(l *needs.Limits) *pipes.Bid {
		return a.bid(&pipes.Offer{Instance: "web.0", Round: 1, Need: needs.Need{Name: "web", Command: []string{"/bin/sh"}, Instances: 1, Limits: l}})
	}
	if b := offer(nil); !b.OK {
		t.Fatalf("no limits: bid %+v", b)
	}
	// This machine as one without a memory controller: tracking is
	// read-only once Open returned, and no offer can race this.
	a.track.limits = spawn.LimitCgroups{V1: map[string]string{spawn.CtrlCPU: "/x", spawn.CtrlPIDs: "/y"},
		Missing: map[string]string{spawn.CtrlMemory: "no memory controller: the test says so"}}
	if b := offer(&needs.Limits{CPUs: 0.5, PIDs: 10}); !b.OK {
		t.Errorf("cpus and pids, which it can enforce: bid %+v", b)
	}
	b := offer(&needs.Limits{Memory: 64 << 20, CPUs: 0.5})
	if b.OK || !strings.Contains(b.Reason, "cannot enforce the memory limit here: no memory controller: the test says so") {
		t.Errorf("a memory limit it cannot enforce: bid %+v, want a refusal naming the memory limit and why", b)
	}
}
