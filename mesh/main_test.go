package mesh_test

import (
	"os"
	"testing"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running.
func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
