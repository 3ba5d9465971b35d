package lan_test

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running: every server,
// link, check and stream they start must have ended by then.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
