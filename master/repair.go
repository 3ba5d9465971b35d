package master

import (
	"errors"
	"time"

	"berth/portoffice"
)

// repairLoop runs the lease repair sweep every period until the Agent
// closes or leaves.
func (a *Agent) repairLoop(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.repair()
		}
	}
}

// repair reclaims every lease whose owner is not a child of this master.
// A child is registered from its grant, before it leases, until its exit
// has been handled (after its ports were released), so a lease with no
// child behind it is a leak: a release that failed, or a crash between a
// lease and the record that would have let the next run adopt or clean it.
// It returns how many leases it reclaimed.
func (a *Agent) repair() int {
	ls, err := a.office.Reclaim(a.hasChild)
	if err != nil {
		if !errors.Is(err, portoffice.ErrClosed) {
			a.log.Error("repair sweep", "err", err)
		}
		return 0
	}
	if len(ls) > 0 {
		a.log.Warn("repair sweep reclaimed leases whose owner is gone", "count", len(ls))
	} else {
		a.log.Debug("repair sweep: every lease has a live owner")
	}
	return len(ls)
}
