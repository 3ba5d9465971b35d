package ipchub_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/ipchub"
)

// TestSlowConsumer: one peer never reads while 15 others broadcast to the
// group. The slow one is disconnected with a reason and counted; the 15
// get every message of every other, in order.
func TestSlowConsumer(t *testing.T) {
	const fast = 15
	hub, base := newTestHub(t, ipchub.Options{QueueLen: 64, WriteTimeout: time.Minute})
	slow := dial(t, base, "db", "slow-peer", "")
	peers := make([]*client, fast)
	for i := range peers {
		peers[i] = dial(t, base, "db", fmt.Sprintf("peer-%02d", i), "")
	}
	pad := strings.Repeat("p", 8000)
	const maxRounds = 5000

	var wg sync.WaitGroup
	errs := make(chan error, 2*fast)
	for i, p := range peers {
		// Reader: every message of every other fast peer, in order,
		// then its done marker.
		pongs := make(chan struct{}, 1)
		finished := new(atomic.Bool) // the writer sent done and its last ping
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- readAll(p, i, fast, pongs, finished)
		}()
		// Writer: broadcast until the hub has disconnected the slow
		// peer, then done.
		go func() {
			defer wg.Done()
			errs <- writeAll(p, i, pad, maxRounds, pongs, finished, func() bool { return hub.Stats().SlowDisconnects > 0 })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	ce := slow.closed(t)
	if ce.Code != websocket.StatusTryAgainLater || !strings.Contains(ce.Reason, "slow consumer") {
		t.Errorf("slow peer closed with %v, want 1013 naming a slow consumer", ce)
	}
	if s := hub.Stats(); s.SlowDisconnects != 1 {
		t.Errorf("slow disconnects %d, want 1 (%+v)", s.SlowDisconnects, s)
	}
	for _, g := range hub.Snapshot() {
		for _, p := range g.Peers {
			if p.ID == "slow-peer" {
				t.Errorf("slow peer still in the snapshot")
			}
		}
	}
}

// writeAll broadcasts "m:FROM:SEQ:pad" frames until stop says so (or
// maxRounds), then "done:FROM:N" and a last ping. It keeps its rate to its
// own reading: a ping after each frame, and the next frame once the pong
// came (it comes after whatever the hub queued to this peer before).
func writeAll(p *client, from int, pad string, maxRounds int, pongs <-chan struct{}, finished *atomic.Bool, stop func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := 0
	pingPong := func() error {
		if err := p.c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			return fmt.Errorf("%s: write: %w", p.id, err)
		}
		select {
		case <-pongs:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s: no pong: %w", p.id, ctx.Err())
		}
	}
	for ; n < maxRounds && !stop(); n++ {
		msg := fmt.Sprintf("m:%d:%d:%s", from, n, pad)
		if err := p.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return fmt.Errorf("%s: write: %w", p.id, err)
		}
		if err := pingPong(); err != nil {
			return err
		}
	}
	if n == maxRounds {
		return fmt.Errorf("%s: the slow peer was not disconnected after %d rounds", p.id, n)
	}
	if err := p.c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "done:%d:%d", from, n)); err != nil {
		return fmt.Errorf("%s: write: %w", p.id, err)
	}
	finished.Store(true)
	return pingPong()
}

// readAll reads until every other fast peer sent done, checking that their
// messages come in order with none missing, and passes pongs on; it ends
// once it also passed on the pong of its writer's last ping.
func readAll(p *client, self, fast int, pongs chan<- struct{}, finished *atomic.Bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	next := make([]int, fast)
	done, last := 0, false
	for done < fast-1 || !last {
		_, b, err := p.c.Read(ctx)
		if err != nil {
			return fmt.Errorf("%s: read after %d done: %w", p.id, done, err)
		}
		f := strings.SplitN(string(b), ":", 4)
		switch f[0] {
		case "pong":
			last = finished.Load()
			pongs <- struct{}{}
		case "m", "done":
			from, _ := strconv.Atoi(f[1])
			seq, _ := strconv.Atoi(f[2])
			if from == self || seq != next[from] {
				return fmt.Errorf("%s: %s:%d:%d, want seq %d", p.id, f[0], from, seq, next[from])
			}
			if f[0] == "done" {
				done++
			} else {
				next[from]++
			}
		}
	}
	return nil
}
