package smalldisk

import (
	"os"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size (such as "2m") at a temp directory and
// unmounts it when the test ends. Mounting needs root; without it the test
// is skipped.
func Mount(tb testing.TB, size string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("mounting a small tmpfs needs root")
	}
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		tb.Skipf("mount tmpfs: %v", err)
	}
	tb.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}
