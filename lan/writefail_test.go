package lan_test

import (
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// TestFailedWriteHoldsGrant: while lan.db cannot be written, a grant is
// never sent (the master would run an instance the disk does not hold,
// and a restarted lanmanager would place it a second time); the write is
// retried, and once it succeeds the grant goes out and the record is
// there after a restart. Failed writes used to release their frames and
// drop their records.
func TestFailedWriteHoldsGrant(t *testing.T) {
	cfg := lan.Config{DataDir: t.TempDir(), BidWindow: 5 * time.Second}
	srv, c := startServer(t, cfg)
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	srv.BreakStore()
	m.takeOffer("web.0")
	waitFor(t, 20*time.Second, func() bool { return srv.WriteFailures() >= 2 }) // written, failed, retried, failed
	select {
	case msg := <-m.msgs:
		if msg.Type == pipes.TypeGrant {
			t.Fatalf("grant sent while its record could not be written: %s", msg.Body)
		}
	default:
	}
	if err := srv.RepairStore(); err != nil {
		t.Fatal(err)
	}
	var g pipes.Grant
	m.expect(pipes.TypeGrant, &g)
	srv.Close()

	_, c2 := startServer(t, cfg)
	in := instance(getNeed(t, c2, "web"), "web.0")
	if in.State != needs.Starting || in.Alloc != g.Alloc {
		t.Errorf("after a restart web.0 = %s under %q, want starting under the granted %q", in.State, in.Alloc, g.Alloc)
	}
}
