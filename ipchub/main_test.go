package ipchub_test

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running: Close must
// end every reader and writer of the hub.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
