package pipes_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/mustrun"
	"berth/pipes"
)

// shortDir returns a fresh directory with a short path: t.TempDir() paths can
// exceed what a socket path may hold.
func shortDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "pp")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// socketPath returns a socket path in a fresh short directory.
func socketPath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(shortDir(tb), "s.sock")
}

// mustListen listens on path and closes the listener at the end of the test.
func mustListen(tb testing.TB, path string) *pipes.Listener {
	tb.Helper()
	l, err := pipes.Listen(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// exchange dials l, sends one message and checks that it arrives.
func exchange(t *testing.T, l *pipes.Listener) {
	t.Helper()
	got := make(chan *pipes.Msg, 1)
	go func() {
		defer close(got)
		c, err := l.AcceptConn()
		if err != nil {
			t.Errorf("AcceptConn: %v", err)
			return
		}
		defer c.Close()
		m, err := c.Recv()
		if err != nil {
			t.Errorf("Recv: %v", err)
			return
		}
		got <- m
	}()
	c, err := pipes.Dial(t.Context(), l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(&pipes.Msg{V: 1, Type: pipes.TypePing, ID: 11}); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m == nil || m.Type != pipes.TypePing || m.ID != 11 {
		t.Fatalf("server received %+v", m)
	}
}

func TestListenMode(t *testing.T) {
	l := mustListen(t, socketPath(t))
	fi, err := os.Lstat(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	exchange(t, l)
}

func TestListenLivePath(t *testing.T) {
	l := mustListen(t, socketPath(t))
	l2, err := pipes.Listen(l.Path())
	if !errors.Is(err, pipes.ErrSocketInUse) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second Listen: %v, want ErrSocketInUse", err)
	}
	// The probe Listen made is the next connection the owner accepts; it
	// closes without sending anything. After it the first listener works.
	probe, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := probe.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("probe connection read %d bytes, %v; want EOF", n, err)
	}
	probe.Close()
	exchange(t, l)
}

func TestListenStaleSocket(t *testing.T) {
	path := socketPath(t)
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	l := mustListen(t, path)
	exchange(t, l)
}

func TestListenRegularFile(t *testing.T) {
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := pipes.Listen(path); err == nil {
		l.Close()
		t.Fatal("Listen on a regular file succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestListenPathLength(t *testing.T) {
	dir := shortDir(t)
	name := func(n int) string { // a path of exactly n bytes
		return filepath.Join(dir, strings.Repeat("s", n-len(dir)-1))
	}
	l := mustListen(t, name(pipes.MaxSocketPath))
	exchange(t, l)

	long := name(pipes.MaxSocketPath + 1)
	if l, err := pipes.Listen(long); !errors.Is(err, pipes.ErrPathTooLong) {
		if l != nil {
			l.Close()
		}
		t.Errorf("Listen(%d bytes): %v, want ErrPathTooLong", len(long), err)
	}
	if c, err := pipes.Dial(t.Context(), long); !errors.Is(err, pipes.ErrPathTooLong) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Dial(%d bytes): %v, want ErrPathTooLong", len(long), err)
	}
}

func TestListenerClose(t *testing.T) {
	l, err := pipes.Listen(socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket path after Close: %v, want it gone", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
	if c, err := pipes.Dial(t.Context(), l.Path()); err == nil {
		c.Close()
		t.Error("Dial after Close succeeded")
	}
	// The path is free again.
	exchange(t, mustListen(t, l.Path()))
}

// TestUnsafeDir (issue 7 §4): a socket's directory that another user made,
// that others may write to, or that is a symbolic link could hand the
// socket to someone else; Listen and Dial refuse it, naming it.
func TestUnsafeDir(t *testing.T) {
	if os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "needs root to give a directory to another user")
	}
	base := shortDir(t)
	mk := func(name string, mode os.FileMode, uid int) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
		return d
	}
	other := mk("other", 0o700, 12345)
	open := mk("open", 0o777, os.Geteuid())
	group := mk("group", 0o770, os.Geteuid())
	link := filepath.Join(base, "link")
	if err := os.Symlink(mk("target", 0o700, os.Geteuid()), link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		other: "belongs to uid 12345", open: "has mode 0777", group: "has mode 0770",
		link: "is a symbolic link", file: "is not a directory",
	} {
		path := filepath.Join(dir, "s.sock")
		if l, err := pipes.Listen(path); !errors.Is(err, pipes.ErrUnsafeDir) || !strings.Contains(err.Error(), dir+" "+want) {
			if err == nil {
				l.Close()
			}
			t.Errorf("Listen(%s): %v, want ErrUnsafeDir saying %q", path, err, want)
		}
		if c, err := pipes.Dial(t.Context(), path); !errors.Is(err, pipes.ErrUnsafeDir) {
			if err == nil {
				c.Close()
			}
			t.Errorf("Dial(%s): %v, want ErrUnsafeDir", path, err)
		}
	}
	// Ours and not writable by others: fine, 0700 or 0755.
	for _, mode := range []os.FileMode{0o700, 0o755} {
		exchange(t, mustListen(t, filepath.Join(mk(fmt.Sprintf("ok%o", mode), mode, os.Geteuid()), "s.sock")))
	}
}
