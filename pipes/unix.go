package pipes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// MaxSocketPath is the longest socket path Listen and Dial accept: the
// kernel's sun_path holds 108 bytes including the terminating NUL.
const MaxSocketPath = 107

// Listener is a Unix socket listener that removes its path on Close.
type Listener struct {
	net.Listener
	path string
	once sync.Once
	err  error
}

// Listen listens on a Unix socket at path with mode 0600. See the package
// doc for how an existing path is treated.
func Listen(path string) (*Listener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("listen %s: %w (%d bytes, limit %d)", path, ErrPathTooLong, len(path), MaxSocketPath)
	}
	if err := checkDir(path); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: path exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: %w: another process answers on it", path, ErrSocketInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: chmod: %w", path, err)
	}
	return &Listener{Listener: l, path: path}, nil
}

// Path is the socket's path.
func (l *Listener) Path() string { return l.path }

// AcceptConn waits for the next connection and frames it.
func (l *Listener) AcceptConn() (*Conn, error) {
	c, err := l.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c, MaxFrame), nil
}

// Close stops listening and removes the socket path; it is idempotent.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.err = l.Listener.Close()
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) && l.err == nil {
			l.err = err
		}
	})
	return l.err
}

// Dial connects to the Unix socket at path.
func Dial(ctx context.Context, path string) (*Conn, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("dial %s: %w", path, ErrPathTooLong)
	}
	if err := checkDir(path); err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return NewConn(c, MaxFrame), nil
}

// checkDir checks the directory of the socket at path: a directory, not a
// symbolic link, owned by this process's effective user, that neither group
// nor others may write to. Whoever can write there can replace the socket
// and stand in for its listener, which is how a directory made in advance
// by another local user takes over the sockets made in it.
func checkDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	uid, ok := fileOwner(fi)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symbolic link", ErrUnsafeDir, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeDir, dir)
	case ok && uid != os.Geteuid():
		return fmt.Errorf("%w: %s belongs to uid %d, not to this user (uid %d)", ErrUnsafeDir, dir, uid, os.Geteuid())
	case ok && fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o: group or others may write to it", ErrUnsafeDir, dir, fi.Mode().Perm())
	}
	return nil
}
