package gateway_test

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running: Close must
// end every connection's goroutines.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
