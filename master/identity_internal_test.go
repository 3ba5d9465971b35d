package master

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"berth/internal/mustrun"
)

// longRuntime returns a runtime directory too long for <runtime>/sock and
// the id of a master that has run there.
func longRuntime(t *testing.T) (string, string) {
	t.Helper()
	rt := filepath.Join(t.TempDir(), strings.Repeat("r", 100))
	if err := os.MkdirAll(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	id, err := loadID(rt)
	if err != nil {
		t.Fatal(err)
	}
	return rt, id
}

// plant makes dir as another user would: owned by uid, with mode.
func plant(t *testing.T, dir string, uid int, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "needs root to make a directory for another user")
	}
}

// wantSafe fails unless dir is a directory of ours with mode 0700.
func wantSafe(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("socket directory %s: mode %v, owner %d; want ours, 0700", dir, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
	}
}

// TestSocketDirNotPredictable (issue 7 §4): another user who makes
// /tmp/berth-<id> first (any mode, or as a symbolic link to a directory of
// theirs) does not get the master's sockets: the directory is a new one
// with a random name, recorded for the next start and for `master ps`.
func TestSocketDirNotPredictable(t *testing.T) {
	needRoot(t)
	for _, how := range []string{"other user", "symbolic link"} {
		t.Run(how, func(t *testing.T) {
			rt, id := longRuntime(t)
			old := filepath.Join(os.TempDir(), "berth-"+id[:12])
			if how == "other user" {
				plant(t, old, 12345, 0o777)
			} else {
				theirs := filepath.Join(t.TempDir(), "theirs")
				plant(t, theirs, 12345, 0o777)
				if err := os.Symlink(theirs, old); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Remove(old) })
			}
			d, err := openSocketDir(rt, id)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			if d == old || filepath.Dir(d) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(d), "berth-") {
				t.Fatalf("socket directory %s, want a new berth-* under %s, not %s", d, os.TempDir(), old)
			}
			wantSafe(t, d)
			if b, err := os.ReadFile(filepath.Join(rt, sockDirFile)); err != nil || strings.TrimSpace(string(b)) != d {
				t.Fatalf("recorded %q, %v; want %s", b, err, d)
			}
			if again, err := openSocketDir(rt, id); err != nil || again != d {
				t.Fatalf("second start: %s, %v; want %s", again, err, d)
			}
			if ps, err := SocketDir(rt); err != nil || ps != d {
				t.Fatalf("SocketDir = %s, %v; want %s", ps, err, d)
			}
		})
	}
}

// TestSocketDirChecked: the recorded directory is checked at every start
// and by `master ps`; one that was removed is made again, one that another
// user, a symbolic link or a loose mode has replaced is refused with an
// error saying what is wrong.
func TestSocketDirChecked(t *testing.T) {
	needRoot(t)
	rt, id := longRuntime(t)
	d, err := openSocketDir(rt, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })

	// Removed (a tmp cleaner, a reboot): made again, ours.
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	if again, err := openSocketDir(rt, id); err != nil || again != d {
		t.Fatalf("after removal: %s, %v; want %s made again", again, err, d)
	}
	wantSafe(t, d)

	theirs := filepath.Join(t.TempDir(), "theirs")
	plant(t, theirs, 12345, 0o777)
	for _, c := range []struct {
		name string
		make func()
		want string
	}{
		{"other user", func() { plant(t, d, 12345, 0o700) }, "belongs to uid 12345"},
		{"symbolic link", func() {
			if err := os.Symlink(theirs, d); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link"},
		{"mode", func() { plant(t, d, os.Geteuid(), 0o755) }, "has mode 0755"},
		{"file", func() {
			if err := os.WriteFile(d, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
			c.make()
			_, err := openSocketDir(rt, id)
			if err == nil || !strings.Contains(err.Error(), "socket directory "+d+" "+c.want) || !strings.Contains(err.Error(), sockDirFile) {
				t.Errorf("start: %v, want a refusal saying %q and how to fix it", err, c.want)
			}
			if _, err := SocketDir(rt); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("SocketDir (master ps): %v, want a refusal saying %q", err, c.want)
			}
		})
	}
	os.RemoveAll(d)
}

// TestSocketDirShort: <runtime>/sock is used where it fits, and checked
// the same way.
func TestSocketDirShort(t *testing.T) {
	needRoot(t)
	rt := t.TempDir()
	d, err := openSocketDir(rt, "0123456789abcdef")
	if err != nil || d != filepath.Join(rt, "sock") {
		t.Fatalf("openSocketDir = %s, %v; want %s", d, err, filepath.Join(rt, "sock"))
	}
	wantSafe(t, d)
	if _, err := os.Stat(filepath.Join(rt, sockDirFile)); !os.IsNotExist(err) {
		t.Errorf("%s written for a directory inside the runtime directory: %v", sockDirFile, err)
	}
	if err := os.Chown(d, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if _, err := openSocketDir(rt, "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "belongs to uid 12345") {
		t.Errorf("start: %v, want a refusal", err)
	}
}

// TestSocketDirLegacy: a directory of ours that an older master made under
// the predictable name is kept, so the children it started keep their
// pipes.
func TestSocketDirLegacy(t *testing.T) {
	rt, id := longRuntime(t)
	old := filepath.Join(os.TempDir(), "berth-"+id[:12])
	plant(t, old, os.Geteuid(), 0o700)
	d, err := openSocketDir(rt, id)
	if err != nil || d != old {
		t.Fatalf("openSocketDir = %s, %v; want the older master's %s", d, err, old)
	}
}
