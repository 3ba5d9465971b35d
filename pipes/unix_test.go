package pipes_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
