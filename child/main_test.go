package child_test

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running: Close must
// end every goroutine of a Conn and of an IPC client.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
