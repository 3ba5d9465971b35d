package master

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/lan"
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
	// This machine as one without a memory controller (no offer arrives
	// here; bid reads the tracking after taking a.mu anyway).
	a.mu.Lock()
	a.track.limits = spawn.LimitCgroups{V1: map[string]string{spawn.CtrlCPU: "/x", spawn.CtrlPIDs: "/y"},
		Missing: map[string]string{spawn.CtrlMemory: "no memory controller: the test says so"}}
	a.mu.Unlock()
	if b := offer(&needs.Limits{CPUs: 0.5, PIDs: 10}); !b.OK {
		t.Errorf("cpus and pids, which it can enforce: bid %+v", b)
	}
	b := offer(&needs.Limits{Memory: 64 << 20, CPUs: 0.5})
	if b.OK || !strings.Contains(b.Reason, "cannot enforce the memory limit here: no memory controller: the test says so") {
		t.Errorf("a memory limit it cannot enforce: bid %+v, want a refusal naming the memory limit and why", b)
	}
}

// TestUnenforceableLimitsPending: through a real lanmanager, a need whose
// memory limit its only master cannot enforce stays pending, and need
// show says why; a need without limits runs on the same master.
func TestUnenforceableLimitsPending(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freeports.Block(t, 1))
	base := freeports.Block(t, 4)
	cfg := DefaultConfig()
	cfg.LanManagerAddress = addr
	cfg.Name, cfg.AdvertiseAddress = "m1", "127.0.0.1"
	cfg.PortRangeStart = map[needs.Protocol]int{needs.TCP: base, needs.HTTP: base + 2}
	cfg.PortRangeSize = 2
	dir, err := os.MkdirTemp("", "bl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.RuntimeDirectory = filepath.Join(dir, "rt")
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	a, err := Open(t.Context(), Options{Config: cfg, Logger: log, Environ: []string{"PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	// This machine as one without a memory controller. bid reads the
	// tracking after taking a.mu, so the write happens before it.
	a.mu.Lock()
	a.track.limits = spawn.LimitCgroups{Missing: map[string]string{spawn.CtrlMemory: "no memory controller: the test says so"}}
	a.mu.Unlock()

	srv, err := lan.Open(t.Context(), lan.Config{Listen: addr, DataDir: t.TempDir(), Logger: log, BidWindow: time.Second, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := &lan.Client{Addr: srv.Addr()}
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "capped", Command: []string{"sleep", "1000"}, Instances: &one,
		Limits: &needs.Limits{Memory: 64 << 20}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "free", Command: []string{"sleep", "1000"}, Instances: &one}); err != nil {
		t.Fatal(err)
	}
	const want = "capped.0: master m1: cannot enforce the memory limit here: no memory controller: the test says so"
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.Need(t.Context(), "capped")
		if err != nil {
			t.Fatal(err)
		}
		free, err := c.Need(t.Context(), "free")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Reasons) == 1 && st.Reasons[0] == want && free.Running == 1 {
			if st.Running != 0 || st.Pending != 1 {
				t.Errorf("capped: %d running, %d pending; want it pending", st.Running, st.Pending)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("capped's reasons %q, free running %d; want %q and 1", st.Reasons, free.Running, want)
		}
		time.Sleep(50 * time.Millisecond) // polling the lanmanager, bounded by the deadline
	}
}
