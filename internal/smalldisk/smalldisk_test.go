package smalldisk

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFillThenRoom: a filled disk refuses a write with ENOSPC, and takes it
// once the filler is removed.
func TestFillThenRoom(t *testing.T) {
	dir := Mount(t, "256k")
	filler := Fill(t, dir)
	err := os.WriteFile(filepath.Join(dir, "more"), make([]byte, 8192), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ENOSPC", err)
	}
	os.Remove(filler)
	if err := os.WriteFile(filepath.Join(dir, "more"), make([]byte, 8192), 0o600); err != nil {
		t.Fatalf("write with room again: %v", err)
	}
}
