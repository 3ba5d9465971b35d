package master_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"berth/internal/mustrun"
	"berth/master"
	"berth/pipes"
)

// TestSocketDirTakeover (issue 7 §4): where the runtime directory is too
// long for socket paths, the master used /tmp/berth-<id>, and another user
// who made it first (here uid 12345, mode 0777) got the control socket and
// every child's pipe. The master now keeps out of it: its sockets are in a
// directory of its own, and `master ps` finds them there.
func TestSocketDirTakeover(t *testing.T) {
	if os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "needs root to make a directory for another user")
	}
	const id = "feedc0ffee00112233445566778899aa"
	old := filepath.Join(os.TempDir(), "berth-"+id[:12])
	if err := os.Mkdir(old, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(old) })
	if err := errors.Join(os.Chmod(old, 0o777), os.Chown(old, 12345, 12345)); err != nil {
		t.Fatal(err)
	}
	var rt string
	_, _, a, _ := newPairWith(t, func(cfg *master.Config) {
		rt = filepath.Join(filepath.Dir(cfg.RuntimeDirectory), strings.Repeat("r", 100))
		cfg.RuntimeDirectory = rt
		if err := os.MkdirAll(rt, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rt, "master.id"), []byte(id+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if a.ID() != id {
		t.Fatalf("id %s, want %s", a.ID(), id)
	}
	sock, err := master.ControlSocket(rt)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(sock)
	t.Cleanup(func() { os.RemoveAll(dir) })
	if dir == old {
		t.Fatalf("the control socket %s is in the directory another user made", sock)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; !fi.IsDir() || fi.Mode().Perm() != 0o700 || uid != uint32(os.Geteuid()) {
		t.Fatalf("socket directory %s: %v, uid %d; want ours with mode 0700", dir, fi.Mode(), uid)
	}
	if ents, _ := os.ReadDir(old); len(ents) != 0 {
		t.Errorf("the master put %d files in the other user's directory", len(ents))
	}
	conn, err := pipes.Dial(t.Context(), sock)
	if err != nil {
		t.Fatalf("master ps cannot reach the control socket: %v", err)
	}
	conn.Close()
}
