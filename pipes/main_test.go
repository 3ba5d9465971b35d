package pipes_test

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running: every connection,
// listener and reader they start must have ended by then.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
