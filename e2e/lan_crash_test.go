package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/lan"
)

// TestLanmanagerKillDuringBurst kills the lanmanager with SIGKILL while
// clients are adding needs, eight at a time. Every need whose add was
// acknowledged (a 2xx answer) must be there after the restart, with the
// command it was given; calls cut off by the kill may or may not have
// landed.
func TestLanmanagerKillDuringBurst(t *testing.T) {
	const total, workers, killAfter = 80, 8, 25
	l := startLan(t, "tok")
	startMaster(t, l, "m1", 5)
	client := &lan.Client{Addr: "http://" + l.addr, Token: l.token}

	var acked sync.Map // need name -> command
	var nAcked atomic.Int64
	var failed atomic.Int64
	killed := make(chan struct{})
	var killOnce sync.Once
	kill := func() { killOnce.Do(func() { l.kill9(); close(killed) }) }

	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				name := fmt.Sprintf("burst-%02d", i)
				cmd := []string{"sleep", fmt.Sprint(600 + i)}
				one := 1
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.AddNeed(ctx, lan.NeedSpec{Name: name, Command: cmd, Instances: &one})
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				acked.Store(name, cmd)
				if nAcked.Add(1) == killAfter {
					go kill()
				}
			}
		})
	}
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	kill() // in case fewer than killAfter were acknowledged
	<-killed
	if nAcked.Load() < killAfter {
		t.Fatalf("only %d adds acknowledged before the kill, want at least %d", nAcked.Load(), killAfter)
	}

	l.restart(t)
	var present map[string][]string
	waitUntil(t, 20*time.Second, "the restarted lanmanager to list needs", func() (bool, string) {
		list, err := client.Needs(t.Context())
		if err != nil {
			return false, err.Error()
		}
		present = map[string][]string{}
		for _, n := range list {
			present[n.Name] = n.Command
		}
		return true, ""
	})
	lost := 0
	acked.Range(func(k, v any) bool {
		if cmd, ok := present[k.(string)]; !ok || !slices.Equal(cmd, v.([]string)) {
			lost++
			t.Errorf("need %s was acknowledged but after the restart it is %v", k, cmd)
		}
		return true
	})
	unacked := len(present) - int(nAcked.Load())
	figure(t, "lanmanager-kill-burst", "adds", total, "concurrency", workers, "acked", nAcked.Load(),
		"failed", failed.Load(), "present_after", len(present), "landed_unacked", unacked, "lost", lost)
}
