package master

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// loadID returns the master's stable id, stored in <runtime>/master.id and
// created on first start. A master is known by this id, never by its IP.
func loadID(dir string) (string, error) {
	path := filepath.Join(dir, "master.id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) < 8 || len(id) > 64 {
			return "", fmt.Errorf("%s: id %q must be 8-64 bytes", path, id)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var r [16]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write master id: %w", err)
	}
	return id, nil
}

// newBoot draws the nonce a master sends in every hello of one run. The
// lanmanager tells the same master on a new link (same nonce) from a copy
// of its runtime directory (same id, another nonce).
func newBoot() string {
	var r [16]byte
	rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// hostLabel turns the host name into a DNS label usable as a master name.
func hostLabel() string {
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	var b strings.Builder
	for _, c := range h {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 63 {
		s = strings.Trim(s[:63], "-")
	}
	if s == "" {
		s = "master"
	}
	return s
}

// sockDirFile names, in the runtime directory, the file that records the
// socket directory a master made under the system temp directory.
const sockDirFile = "sockdir"

// socketDirFits reports whether the longest path berth puts in dir (a
// 16-byte alloc prefix + ".sock") fits the kernel's limit for a socket.
func socketDirFits(dir string) bool { return len(dir)+1+16+5 <= 107 }

// SocketDir returns the directory of the control socket and the children's
// pipes of the master with this runtime directory, after checking that it
// is safe to use (see openSocketDir): <runtime>/sock, or the directory
// recorded in <runtime>/sockdir when <runtime>/sock would make socket paths
// longer than the kernel allows.
func SocketDir(runtimeDir string) (string, error) {
	d, err := socketDirPath(runtimeDir)
	if err != nil {
		return "", err
	}
	if d == "" {
		return "", fmt.Errorf("no master has run with runtime directory %s: no %s", runtimeDir, sockDirFile)
	}
	return d, checkSocketDir(d, runtimeDir)
}

// socketDirPath returns <runtime>/sock if it fits, else the directory
// recorded in <runtime>/sockdir, else "".
func socketDirPath(runtimeDir string) (string, error) {
	if d := filepath.Join(runtimeDir, "sock"); socketDirFits(d) {
		return d, nil
	}
	rec := filepath.Join(runtimeDir, sockDirFile)
	b, err := os.ReadFile(rec)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", rec, err)
	}
	return parseSockDirFile(runtimeDir, b)
}

// openSocketDir returns the socket directory of a master starting on
// runtimeDir with this id, creating it when missing, and checks it.
//
// Where <runtime>/sock is too long, the directory goes under the system
// temp directory, which every local user may write to. Its name is random
// and made by exclusive create (os.MkdirTemp), so nobody can make it first,
// and it is recorded in <runtime>/sockdir so that the next start (and
// `master ps`) uses the same one: adopted children redial their pipes
// there. A directory that a master before this rule made under the old
// predictable name (berth-<id>) is kept when it passes the checks, so its
// children keep their pipes; one that fails them is never used.
//
// Whatever its place, the directory must be a directory, not a symbolic
// link, owned by this user, with mode 0700, or it is refused with an error
// saying so.
func openSocketDir(runtimeDir, id string) (string, error) {
	d, err := socketDirPath(runtimeDir)
	if err != nil {
		return "", err
	}
	if d == "" {
		if d, err = newTempSocketDir(runtimeDir, id); err != nil {
			return "", err
		}
	}
	return d, ensureSocketDir(runtimeDir, d)
}

// newTempSocketDir picks the socket directory under the system temp
// directory and records it; a record written meanwhile by another master
// on the same runtime directory wins.
func newTempSocketDir(runtimeDir, id string) (string, error) {
	d := filepath.Join(os.TempDir(), "berth-"+id[:min(12, len(id))])
	made := false
	if checkSocketDir(d, runtimeDir) != nil {
		var err error
		if d, err = os.MkdirTemp("", "berth-"); err != nil {
			return "", fmt.Errorf("create socket directory: %w", err)
		}
		made = true
		if !socketDirFits(d) {
			os.Remove(d)
			return "", fmt.Errorf("socket directory %s: too long for socket paths: set a shorter runtime directory or TMPDIR", d)
		}
	}
	err := writeSockDirFile(runtimeDir, d)
	if errors.Is(err, fs.ErrExist) {
		if made {
			os.Remove(d)
		}
		if d, err = socketDirPath(runtimeDir); err == nil && d == "" {
			err = fmt.Errorf("%s: empty", filepath.Join(runtimeDir, sockDirFile))
		}
	}
	return d, err
}

// writeSockDirFile records dir in <runtime>/sockdir, which must not exist.
func writeSockDirFile(runtimeDir, dir string) error {
	f, err := os.OpenFile(filepath.Join(runtimeDir, sockDirFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("record socket directory: %w", err)
	}
	_, err = f.WriteString(dir + "\n")
	return errors.Join(err, f.Close())
}

// ensureSocketDir makes dir again, by exclusive create, when it is gone,
// records it again in <runtime>/sockdir when it lies outside the runtime
// directory and the record is gone, and checks it. A master calls it at
// start and whenever it finds its runtime directory damaged.
func ensureSocketDir(runtimeDir, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if dir != filepath.Join(runtimeDir, "sock") {
		if err := writeSockDirFile(runtimeDir, dir); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return checkSocketDir(dir, runtimeDir)
}

// parseSockDirFile reads the path recorded in <runtime>/sockdir.
func parseSockDirFile(runtimeDir string, b []byte) (string, error) {
	d := strings.TrimSpace(string(b))
	if !filepath.IsAbs(d) || filepath.Clean(d) != d || !socketDirFits(d) {
		return "", fmt.Errorf("%s: %q is not a usable socket directory: remove the file to have a new one made",
			filepath.Join(runtimeDir, sockDirFile), d)
	}
	return d, nil
}

// checkSocketDir checks that dir is a directory (not a symbolic link),
// owned by this process's effective user, with mode 0700: a directory that
// another user made or can write to could hand the master's sockets, and
// with them its children's pipes and `master ps`, to that user.
func checkSocketDir(dir, runtimeDir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	fix := "remove it (a master makes a new one)"
	if dir != filepath.Join(runtimeDir, "sock") {
		fix = "remove it, or remove " + filepath.Join(runtimeDir, sockDirFile) + " to have a new one made"
	}
	switch st, ok := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("socket directory %s is a symbolic link, refused: another user may have planted it; %s", dir, fix)
	case !fi.IsDir():
		return fmt.Errorf("socket directory %s is not a directory; %s", dir, fix)
	case ok && st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("socket directory %s belongs to uid %d, not to this user (uid %d), refused: another user may have made it to take over the sockets; %s",
			dir, st.Uid, os.Geteuid(), fix)
	case fi.Mode().Perm() != 0o700:
		return fmt.Errorf("socket directory %s has mode %04o, want 0700, refused: others may have changed what is in it; %s",
			dir, fi.Mode().Perm(), fix)
	}
	return nil
}

// ControlSocket returns the path of a master's control socket, for
// `master ps`, from its runtime directory, once its directory has passed
// the checks of SocketDir.
func ControlSocket(runtimeDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(runtimeDir, "master.id")); err != nil {
		return "", fmt.Errorf("no master has run with runtime directory %s: %w", runtimeDir, err)
	}
	d, err := SocketDir(runtimeDir)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "master.sock"), nil
}
