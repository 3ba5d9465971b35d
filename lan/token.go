package lan

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// TokenFile is the name of the API token's file in a data directory.
const TokenFile = "token"

// LoadOrCreateToken returns the API token kept in dir/token, creating the
// file (64 hex digits from crypto/rand, mode 0600) on first use. A token
// file that others may read or write is refused: whoever holds the token
// can run any command on every master.
func LoadOrCreateToken(dir string) (token, path string, created bool, err error) {
	return loadOrCreateSecret(dir, TokenFile)
}

// IPCTokenFile is the name of the IPC hub's token's file in a data
// directory. It is never the API token: children get tokens made from it
// (ipchub.ChildToken), and whoever holds it may join any group.
const IPCTokenFile = "ipc-token"

// LoadOrCreateIPCToken is LoadOrCreateToken for the IPC hub's token, in
// dir/ipc-token.
func LoadOrCreateIPCToken(dir string) (token, path string, created bool, err error) {
	return loadOrCreateSecret(dir, IPCTokenFile)
}

func loadOrCreateSecret(dir, file string) (token, path string, created bool, err error) {
	path = filepath.Join(dir, file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", path, false, fmt.Errorf("token: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		var b [32]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
		_, err = f.WriteString(token + "\n")
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return "", path, false, fmt.Errorf("write token: %w", err)
		}
		return token, path, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return "", path, false, fmt.Errorf("create token: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return "", path, false, fmt.Errorf("token: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", path, false, fmt.Errorf("token %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", path, false, fmt.Errorf("token %s: mode %04o lets other users read or change it: chmod 600 it, or delete it to get a new token", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", path, false, fmt.Errorf("token %s: owned by uid %d, not by this user (%d)", path, st.Uid, os.Geteuid())
	}
	token, err = ReadTokenFile(path)
	return token, path, false, err
}

// ReadTokenFile reads a token from a file: its first line, trimmed.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	token, _, _ := strings.Cut(string(b), "\n")
	token = strings.TrimSpace(token)
	if token == "" {
		return "", fmt.Errorf("token %s: empty", path)
	}
	if len(token) > 4096 || strings.ContainsFunc(token, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return "", fmt.Errorf("token %s: must be one line of printable ASCII without spaces, at most 4096 bytes", path)
	}
	return token, nil
}

// A lanmanager announces where its data directory is, so that the CLI and
// masters on the same machine find its token by themselves: one file per
// port, <dir>/lanmanager-<port>.json, in a per-user directory of mode 0700
// (the commands use $XDG_RUNTIME_DIR/berth, else the user's cache
// directory; see cliapp.AnnounceDir). The file holds no secret; the token stays in the data
// directory, readable by the lanmanager's user only.
type announcement struct {
	Listen string `json:"listen"`
	Data   string `json:"data"`
	PID    int    `json:"pid"`
	// Start is the process's start time (clock ticks since boot, field 22
	// of /proc/<pid>/stat): a pid reused after a crash or a reboot is not
	// the lanmanager that wrote the file.
	Start uint64 `json:"start,omitempty"`
}

// live reports whether the process that wrote a still runs: its pid
// answers signal 0 (any error, EPERM included, counts as gone: another
// user's process is not ours) and, where the file says, with the same
// start time.
func (a *announcement) live() bool {
	if a.PID <= 0 || syscall.Kill(a.PID, 0) != nil {
		return false
	}
	if a.Start == 0 {
		return true // written before the field existed
	}
	st, err := procStart(a.PID)
	return err == nil && st == a.Start
}

// procStart is a process's start time in clock ticks since boot.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22; f[0] is field 3
}

func announcePath(dir, port string) string {
	return filepath.Join(dir, "lanmanager-"+port+".json")
}

// Announce writes the announcement of a lanmanager listening on listen
// (its real address) with its data directory. The returned function
// removes it.
func Announce(dir, listen, dataDir string) (remove func(), err error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	start, _ := procStart(os.Getpid()) // 0 if /proc cannot say: the pid alone is checked then
	b, _ := json.Marshal(announcement{Listen: listen, Data: abs, PID: os.Getpid(), Start: start})
	path := announcePath(dir, port)
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("announce: %w", err)
	}
	return func() {
		// Remove it only while it is still ours.
		if a, err := readAnnouncement(path); err == nil && a.PID == os.Getpid() {
			os.Remove(path)
		}
	}, nil
}

func readAnnouncement(path string) (*announcement, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a announcement
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &a, nil
}

// Announced returns the listen addresses of the lanmanagers of this user
// announced in dir that still run, in no particular order; none if dir is
// not private (see FindToken).
func Announced(dir string) []string {
	if dir == "" || checkPrivateDir(dir) != nil {
		return nil
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "lanmanager-*.json"))
	var out []string
	for _, p := range paths {
		a, err := readAnnouncement(p)
		if err != nil || !a.live() {
			continue
		}
		if _, _, err := net.SplitHostPort(a.Listen); err == nil {
			out = append(out, a.Listen)
		}
	}
	return out
}

// FindToken looks for the token of the lanmanager at addr (a URL or
// host:port) among the announcements in dir. It finds one only for a
// lanmanager of this machine that is still running and whose data
// directory this user can read; ok is false otherwise.
func FindToken(dir, addr string) (token, path string, ok bool) {
	if dir == "" {
		return "", "", false
	}
	base, err := BaseURL(addr)
	if err != nil {
		return "", "", false
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", "", false
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		return "", "", false
	}
	if checkPrivateDir(dir) != nil {
		return "", "", false
	}
	a, err := readAnnouncement(announcePath(dir, port))
	if err != nil || !a.live() {
		return "", "", false
	}
	lhost, _, err := net.SplitHostPort(a.Listen)
	if err != nil || !sameMachineHost(host, lhost) {
		return "", "", false
	}
	path = filepath.Join(a.Data, TokenFile)
	token, err = ReadTokenFile(path)
	if err != nil {
		return "", "", false
	}
	return token, path, true
}

// checkPrivateDir refuses a directory that is a symlink, is not this
// user's, or that others may write to: whoever can write there could point
// clients at a data directory of their choosing.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s: mode %04o lets others write to it", dir, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s: owned by uid %d, not by this user (%d)", dir, st.Uid, os.Geteuid())
	}
	return nil
}

// sameMachineHost reports whether a client dialling host reaches a
// lanmanager listening on lhost of this machine.
func sameMachineHost(host, lhost string) bool {
	if strings.EqualFold(host, lhost) {
		return true
	}
	local := func(h string) bool {
		if h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	lip := net.ParseIP(lhost)
	wildcard := lhost == "" || (lip != nil && lip.IsUnspecified())
	return local(host) && (local(lhost) || wildcard)
}
