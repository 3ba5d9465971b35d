package lan_test

import (
	"context"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// TestReadsWithoutServerLock: need ls, need show and service ls answer
// from the view while Server.mu is held (by the placer, a link or a
// write, under load): reads never queue behind them. They used to.
func TestReadsWithoutServerLock(t *testing.T) {
	srv, c := startServer(t, lan.Config{})
	m := dialMaster(t, srv, "", id1, "m1")
	addWeb(t, c, 1)
	runAll(t, []*fakeMaster{m}, 1)

	release := srv.HoldLock()
	defer func() {
		if release != nil {
			release()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	list, err := c.Needs(ctx)
	if err != nil || len(list) != 1 || list[0].Running != 1 {
		t.Fatalf("need ls while the lock is held = %+v, %v; want web with 1 running", list, err)
	}
	st, err := c.Need(ctx, "web")
	if err != nil || len(st.InstanceList) != 1 || st.InstanceList[0].State != needs.Running {
		t.Fatalf("need show while the lock is held = %+v, %v", st, err)
	}
	svcs, err := c.Services(ctx)
	if err != nil || len(svcs) != 1 || svcs[0].Name != "web.0" {
		t.Fatalf("service ls while the lock is held = %+v, %v", svcs, err)
	}
	if _, err := c.Need(ctx, "nope"); err == nil {
		t.Error("need show of an unknown need succeeded")
	}
	release()
	release = nil
}
