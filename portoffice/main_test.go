package portoffice

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the run if a test leaves a goroutine behind, such as the
// committer of an Office that was never closed.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
