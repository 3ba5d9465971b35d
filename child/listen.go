package child

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"berth/needs"
)

// Environment variables of socket activation, by the systemd convention.
const (
	EnvListenFDs   = "LISTEN_FDS"     // how many sockets, from fd 3 up
	EnvListenNames = "LISTEN_FDNAMES" // their names, joined by ':'
	EnvListenPID   = "LISTEN_PID"     // the pid they are meant for
)

// listenFDsStart is the first inherited fd (systemd's SD_LISTEN_FDS_START).
const listenFDsStart = 3

// maxListenFDs bounds LISTEN_FDS; berth passes at most one per protocol.
const maxListenFDs = 64

// ErrNoPort is returned by Listen for a protocol that has neither an
// inherited socket nor a BERTH_PORT_<PROTO> variable.
var ErrNoPort = errors.New("no socket or port for this protocol")

// inherited holds the sockets passed to this process, read once.
var inherited struct {
	once sync.Once
	err  error

	mu sync.Mutex              // Protects following.
	ls map[string]net.Listener // not yet handed out
}

// Listeners returns the listening sockets the master passed to this process
// (socket activation), by name: the need's protocols, "http", "tcp" or
// "ws". It returns an empty map and no error when there are none: LISTEN_PID
// is unset, or names another process (the variables were inherited from a
// parent they were meant for).
//
// The first call of Listeners or Listen reads LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES, unsets them, so that programs this one starts do not take
// the sockets for theirs, and sets close-on-exec on the sockets. Make it
// before opening other files. Each socket is handed out once, to the caller
// who then owns it: Listeners returns those that Listen has not taken, and
// an empty map after that. A malformed variable, or an fd that is not a
// listening socket, is an error naming it (matching needs.ErrInvalid), and
// every later call returns it too.
func Listeners() (map[string]net.Listener, error) {
	if err := loadInherited(); err != nil {
		return nil, err
	}
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	ls := inherited.ls
	inherited.ls = nil
	if ls == nil {
		ls = map[string]net.Listener{}
	}
	return ls, nil
}

// Listen returns the socket to serve proto ("http", "tcp" or "ws") on: the
// one the master passed for it, if any (see Listeners), else a new listener
// on BERTH_HOST and the port in BERTH_PORT_<PROTO>, as net.Listen makes it.
// So a child that calls Listen works with and without socket activation. A
// protocol with neither is an error wrapping ErrNoPort.
func Listen(proto string) (net.Listener, error) {
	if err := loadInherited(); err != nil {
		return nil, err
	}
	inherited.mu.Lock()
	l, ok := inherited.ls[proto]
	delete(inherited.ls, proto)
	inherited.mu.Unlock()
	if ok {
		return l, nil
	}
	env, err := FromEnv()
	if err != nil {
		return nil, err
	}
	p := needs.Protocol(proto)
	addr := env.Addr(p)
	if addr == "" {
		return nil, fmt.Errorf("listen %s: %w (no %s and no inherited socket named %q)", proto, ErrNoPort, p.EnvName(), proto)
	}
	return net.Listen("tcp", addr)
}

func loadInherited() error {
	inherited.once.Do(func() {
		ls, err := readListenEnv()
		inherited.mu.Lock()
		inherited.ls, inherited.err = ls, err
		inherited.mu.Unlock()
	})
	return inherited.err
}

// readListenEnv reads and unsets the LISTEN_* variables and makes a
// listener of each socket they describe.
func readListenEnv() (map[string]net.Listener, error) {
	pidVar, fdsVar, namesVar := os.Getenv(EnvListenPID), os.Getenv(EnvListenFDs), os.Getenv(EnvListenNames)
	for _, k := range []string{EnvListenPID, EnvListenFDs, EnvListenNames} {
		os.Unsetenv(k)
	}
	names, err := parseListenEnv(pidVar, fdsVar, namesVar, os.Getpid())
	if err != nil || len(names) == 0 {
		return nil, err
	}
	ls := make(map[string]net.Listener, len(names))
	for i, name := range names {
		l, err := fileListener(listenFDsStart+i, name)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, &needs.FieldError{Field: EnvListenFDs, Msg: fmt.Sprintf("fd %d (%s): %v", listenFDsStart+i, name, err)}
		}
		ls[name] = l
	}
	return ls, nil
}

// parseListenEnv checks the values of LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES for process self and returns the names of the sockets at
// fd 3 and up: none when the variables are unset or meant for another
// process.
func parseListenEnv(pidVar, fdsVar, namesVar string, self int) ([]string, error) {
	if pidVar == "" && fdsVar == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidVar)
	if err != nil || pid < 1 {
		return nil, &needs.FieldError{Field: EnvListenPID, Msg: fmt.Sprintf("%q is not a pid", pidVar)}
	}
	if pid != self {
		return nil, nil // meant for another process
	}
	n, err := strconv.Atoi(fdsVar)
	if err != nil || n < 0 || n > maxListenFDs {
		return nil, &needs.FieldError{Field: EnvListenFDs, Msg: fmt.Sprintf("%q is not a number of sockets (0-%d)", fdsVar, maxListenFDs)}
	}
	if n == 0 {
		return nil, nil
	}
	names := strings.Split(namesVar, ":")
	if namesVar == "" || len(names) != n {
		return nil, &needs.FieldError{Field: EnvListenNames, Msg: fmt.Sprintf("%q does not name the %d sockets of %s", namesVar, n, EnvListenFDs)}
	}
	for i, name := range names {
		if name == "" || slices.Contains(names[:i], name) {
			return nil, &needs.FieldError{Field: EnvListenNames, Msg: fmt.Sprintf("%q names a socket twice or not at all", namesVar)}
		}
	}
	return names, nil
}

// fileListener makes a net.Listener of the inherited fd and closes fd. It
// checks first that fd is a listening socket, so that it never closes an fd
// this process opened for something else.
func fileListener(fd int, name string) (net.Listener, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("not open: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return nil, errors.New("not a socket")
	}
	if v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || v == 0 {
		return nil, errors.New("not a listening socket")
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // FileListener made its own copy
	return net.FileListener(f)
}
