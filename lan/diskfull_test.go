package lan_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"berth/lan"
	"berth/needs"
)

// smallDisk mounts a tmpfs of size bytes at a temp directory (root only)
// and unmounts it when the test ends.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes a file until the disk is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for i := 0; i < 1<<20; i++ {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatal(err)
		}
	}
	t.Fatal("the disk never filled")
	return ""
}

// TestDiskFull: with lan.db on a full disk, a declaration is refused with
// an error (never acknowledged and then lost), the lanmanager keeps
// serving, and once there is room again everything acknowledged is there,
// across a restart too.
func TestDiskFull(t *testing.T) {
	disk := smallDisk(t, "2m")
	data := filepath.Join(disk, "data")
	cfg := lan.Config{DataDir: data}
	srv, c := startServer(t, cfg)
	zero := 0
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "before", Command: []string{"x"}, Instances: &zero}); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, disk)

	big := map[string]string{}
	for i := range 64 {
		big[strings.Repeat("K", 8)+string(rune('A'+i%26))+strings.Repeat("x", i)] = strings.Repeat("v", 4000)
	}
	refused := 0
	for i := range 20 {
		name := "full-" + string(rune('a'+i))
		_, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: name, Command: []string{"x"}, Instances: &zero, Env: big})
		if err != nil {
			refused++
			if errors.Is(err, needs.ErrInvalid) || !strings.Contains(err.Error(), "no space left on device") {
				t.Fatalf("a full disk answered %v; want an error that says the disk is full", err)
			}
			if _, err := c.Need(t.Context(), name); !errors.Is(err, needs.ErrNotFound) {
				t.Errorf("refused need %s is listed anyway: %v", name, err)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no declaration was refused on a full disk")
	}
	if _, err := c.Needs(t.Context()); err != nil {
		t.Fatalf("the lanmanager stopped answering on a full disk: %v", err)
	}

	os.Remove(filler)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "after", Command: []string{"x"}, Instances: &zero}); err != nil {
		t.Fatalf("with room again: %v", err)
	}
	acked, err := c.Needs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv2, c2 := startServer(t, cfg)
	defer srv2.Close()
	again, err := c2.Needs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(acked) {
		t.Errorf("after a restart %d needs, %d were acknowledged", len(again), len(acked))
	}
	t.Logf("refused %d of 20 declarations on the full disk; %d needs acknowledged, all there after a restart", refused, len(acked))
}
