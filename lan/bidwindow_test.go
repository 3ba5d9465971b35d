package lan_test

import (
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// TestBidWindowLateBidTaken: a master that bids after the bid window,
// while no other bid came, still gets the instance in that round: the
// round waited another window rather than offering the instance again.
func TestBidWindowLateBidTaken(t *testing.T) {
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: 10 * time.Second, BidWindow: time.Second, Clock: clock.Now})
	m := dialMaster(t, srv, "", id1, "m1")
	t0 := clock.Now()
	addWeb(t, c, 1)
	var o pipes.Offer
	m.expect(pipes.TypeOffer, &o)
	// A pass at twice the window (the ping proves it ran): the round has
	// no bid and its master is connected, so it waits a window more.
	advanceTo(t, clock, t0.Add(2*time.Second), m)
	m.send(pipes.TypeBid, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
	var g pipes.Grant
	m.expect(pipes.TypeGrant, &g)
	if g.Instance != "web.0" {
		t.Fatalf("grant %+v, want web.0", g)
	}
}

// TestBidWindowGivesUp: a round without any bid waits eight windows in
// all, then the instance stays pending with the reason, naming the wait.
func TestBidWindowGivesUp(t *testing.T) {
	clock := newFakeClock()
	srv, c := startServer(t, lan.Config{MasterTTL: 10 * time.Second, BidWindow: time.Second, Clock: clock.Now})
	events := subscribe(t, srv, c)
	m := dialMaster(t, srv, "", id1, "m1")
	t0 := clock.Now()
	addWeb(t, c, 1)
	m.expect(pipes.TypeOffer, nil)
	for k := 2; k <= 6; k += 2 {
		advanceTo(t, clock, t0.Add(time.Duration(k)*time.Second), m)
	}
	// Still waiting after 6 s: no reason given yet.
	if in := instance(getNeed(t, c, "web"), "web.0"); in == nil || in.State != needs.Pending || in.Reason != "" {
		t.Fatalf("after 6 windows: %+v, want pending without a reason", in)
	}
	advanceTo(t, clock, t0.Add(8*time.Second), m)
	ev := waitEvent(t, events, 10*time.Second, "web.0 unplaced", func(e lan.Event) bool {
		return e.Kind == lan.EventInstance && e.Instance != nil && e.Instance.Name == "web.0" && e.Instance.Reason != ""
	})
	if want := "master m1: no bid within 8s"; !strings.Contains(ev.Instance.Reason, want) {
		t.Errorf("reason %q, want %q", ev.Instance.Reason, want)
	}
}
