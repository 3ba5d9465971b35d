package lan_test

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// TestPlacementBurst: 10,000 pending instances at once (10 needs × 1,000)
// used to fill the masters' 4,096-frame queues with offers, so their links
// were dropped again and again and nothing was placed. Two masters that
// take every offer get every instance running, and neither link drops.
func TestPlacementBurst(t *testing.T) {
	perNeed, nNeeds := 1000, 10
	if testing.Short() {
		perNeed = 200
	}
	total := perNeed * nNeeds
	srv, c := newTestServer(t, "")
	var approved atomic.Int64
	var wg sync.WaitGroup
	var masters []*burstMaster
	for i, id := range []string{id1, id2} {
		bm := &burstMaster{fakeMaster: dialMaster(t, srv, "", id, fmt.Sprintf("m%d", i+1)), approved: &approved,
			errs: make(chan error, 1)}
		masters = append(masters, bm)
		wg.Go(bm.serve)
	}
	began := time.Now()
	for i := range nNeeds {
		if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: fmt.Sprintf("burst%d", i), Command: []string{"/bin/burst"},
			Instances: intp(perNeed)}); err != nil {
			t.Fatalf("AddNeed: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for approved.Load() < int64(total) {
		for _, bm := range masters {
			select {
			case err := <-bm.errs:
				t.Fatalf("master %s: %v (after %d of %d approved in %s)", bm.name, err, approved.Load(), total,
					time.Since(began).Round(time.Millisecond))
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d approved after 5 minutes", approved.Load(), total)
		}
		<-tick.C
	}
	took := time.Since(began)
	running := 0
	for _, st := range needsStatus(t, c) {
		running += st.Running
	}
	if running != total {
		t.Errorf("%d instances running, want %d", running, total)
	}
	for _, bm := range masters {
		if !masterConnected(t, c, bm.name) {
			t.Errorf("master %s's link dropped", bm.name)
		}
		t.Logf("master %s: %d offers, %d grants", bm.name, bm.offers.Load(), bm.grants.Load())
	}
	t.Logf("FIGURE placement burst: %d instances (%d needs x %d) on 2 masters placed and running in %s (%.0f placements/s), links dropped 0",
		total, nNeeds, perNeed, took.Round(time.Millisecond), float64(total)/took.Seconds())
	for _, bm := range masters {
		bm.conn.Close()
	}
	wg.Wait()
}

// bidCost is what a bid costs the fake master. A real one looks the
// command up, counts free ports and may be slow for a moment; a fake one
// that answers in microseconds hides a lanmanager that floods its link.
const bidCost = 100 * time.Microsecond

// burstMaster bids yes on every offer, after bidCost, and answers every
// grant with a child that says ready at once (no ports), counting
// approvals.
type burstMaster struct {
	*fakeMaster
	approved       *atomic.Int64
	offers, grants atomic.Int64
	errs           chan error // the first failure: the link closed, or a send failed
}

func (bm *burstMaster) serve() {
	fail := func(err error) {
		select {
		case bm.errs <- err:
		default:
		}
	}
	for msg := range bm.msgs {
		var err error
		switch msg.Type {
		case pipes.TypeOffer:
			var o pipes.Offer
			if err = msg.Decode(&o); err == nil {
				bm.offers.Add(1)
				time.Sleep(bidCost)
				err = bm.conn.SendBody(pipes.TypeBid, 0, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
			}
		case pipes.TypeGrant:
			var g pipes.Grant
			if err = msg.Decode(&g); err == nil {
				bm.grants.Add(1)
				err = bm.conn.SendBody(pipes.TypeStarted, 0, &pipes.Started{Alloc: g.Alloc, Instance: g.Instance,
					PID: os.Getpid(), Address: "127.0.0.1", StartedAt: time.Now().UTC(), Ready: true})
			}
		case pipes.TypeApprove:
			bm.approved.Add(1)
		}
		if err != nil {
			fail(err)
			return
		}
	}
	fail(fmt.Errorf("link closed"))
}

func needsStatus(t *testing.T, c *lan.Client) []*needs.NeedStatus {
	t.Helper()
	list, err := c.Needs(t.Context())
	if err != nil {
		t.Fatalf("Needs: %v", err)
	}
	return list
}

func masterConnected(t *testing.T, c *lan.Client, name string) bool {
	t.Helper()
	ms, err := c.Masters(t.Context())
	if err != nil {
		t.Fatalf("Masters: %v", err)
	}
	for _, m := range ms {
		if m.Name == name {
			return m.Connected
		}
	}
	return false
}
