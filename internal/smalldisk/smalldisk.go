// Package smalldisk gives tests a small file system they can fill, to check
// what berth does when its disk is full. Only tests import it.
package smalldisk

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Fill writes a file in dir until the disk is full and returns its path;
// removing it makes room again.
func Fill(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for range 1 << 20 {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			tb.Fatal(err)
		}
	}
	tb.Fatal("the disk never filled")
	return ""
}
