package spawn_test

import (
	"errors"
	"testing"

	"berth/spawn"
)

// TestAdoptRefusesInitAndGroupZero: pid 0 and 1 are never adopted, so that
// no stop can become kill(-0) (our own group) or kill(-1) (every process).
func TestAdoptRefusesInitAndGroupZero(t *testing.T) {
	for _, pid := range []int{-1, 0, 1} {
		if c, err := spawn.Adopt(pid, 1, spawn.Tracking{}); !errors.Is(err, spawn.ErrGone) || c != nil {
			t.Errorf("Adopt(%d) = %v, %v; want ErrGone", pid, c, err)
		}
	}
}
