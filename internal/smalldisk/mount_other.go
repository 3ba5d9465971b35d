//go:build !linux

package smalldisk

import "testing"

// Mount skips the test: a small tmpfs of its own is mounted on Linux only.
func Mount(tb testing.TB, size string) string {
	tb.Helper()
	tb.Skip("mounting a small tmpfs needs Linux")
	return ""
}
