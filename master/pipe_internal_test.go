package master

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPipeLayouts: a child's pipe is <socket dir>/<alloc16>/pipe, its
// directory made 0700 when listened on and removed with the pipe; a pipe
// recorded in the earlier layout, <socket dir>/<alloc16>.sock, is listened
// on where it is and removed without its directory (the socket directory).
func TestPipeLayouts(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "bp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	p := childPipePath(sockDir, "0123456789abcdef0123")
	if want := filepath.Join(sockDir, "0123456789abcdef", "pipe"); p != want {
		t.Fatalf("childPipePath = %s, want %s", p, want)
	}
	if !socketDirFits(sockDir) || len(p) != len(sockDir)+1+16+5 {
		t.Fatalf("%s: not as long as the earlier layout's path", p)
	}
	l, err := listenPipe(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("pipe directory: %v, %v; want 0700", fi, err)
	}
	l.Close()
	// Listened on again (a master restart, or a deleted socket file).
	if l, err = listenPipe(p); err != nil {
		t.Fatalf("listen again: %v", err)
	}
	l.Close()
	removePipe(p)
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Fatalf("pipe directory after removePipe: %v, want gone", err)
	}

	old := filepath.Join(sockDir, "fedcba9876543210.sock")
	if l, err = listenPipe(old); err != nil {
		t.Fatalf("listen on the earlier layout: %v", err)
	}
	l.Close()
	removePipe(old)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("earlier-layout pipe after removePipe: %v, want gone", err)
	}
	if _, err := os.Stat(sockDir); err != nil {
		t.Fatalf("the socket directory went with an earlier-layout pipe: %v", err)
	}
	removePipe("") // a child that never had a pipe
}
