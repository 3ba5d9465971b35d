package master

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// SocketDir is the directory of the master's control socket and its
// children's pipes: <runtime>/sock, or, when that would make socket paths
// longer than the kernel allows, a directory under the system temp dir
// named after the master id.
func SocketDir(runtimeDir, id string) string {
	d := filepath.Join(runtimeDir, "sock")
	// Longest name inside: a 16-byte alloc prefix + ".sock".
	if len(d)+1+16+5 <= 107 {
		return d
	}
	return filepath.Join(os.TempDir(), "berth-"+id[:min(12, len(id))])
}

// ControlSocket returns the path of a master's control socket, for
// `master ps`, from its runtime directory.
func ControlSocket(runtimeDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(runtimeDir, "master.id"))
	if err != nil {
		return "", fmt.Errorf("no master has run with runtime directory %s: %w", runtimeDir, err)
	}
	return filepath.Join(SocketDir(runtimeDir, strings.TrimSpace(string(b))), "master.sock"), nil
}
