// Package freeports hands tests runs of loopback ports picked at run time,
// so that no test depends on a fixed port being free on a machine where
// other programs hold ports. Only tests import it.
//
// [Block] looks for n consecutive ports that all bind on 127.0.0.1 now,
// from a random start anywhere in 1024-65535 outside the kernel's ephemeral
// range (where outgoing connections take their source ports), outside the
// ports browsers refuse, and outside berth's own defaults (a real master on the machine leases from those at
// any time). Another test of this repository, in this process or another
// one run at the same time by `go test ./...`, never gets an overlapping
// block while the first holds it: blocks are reserved with flock(2) on
// files in a directory under os.TempDir(), released when the test ends or
// its process dies.
//
// # Caveats
//
// A program outside the repository may still take a port between the check
// and its use; tests that cannot rule that out assert on what the port
// office leased, not on a number.
package freeports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// chunk is the number of consecutive ports one lock file reserves.
const chunk = 16

// avoid lists port spans never handed out: berth's default ranges (tcp
// 15000, http 16000, ws 17000, 1000 ports each, master.DefaultConfig), the
// lanmanager's default ports (API 23552, IPC hub 9163, gateway 8000: a
// test binds them to see dev give way), and the ports above 1023 on the Fetch
// standard's "bad port" list, which browsers refuse to connect to (a test
// driving Chromium failed with "Failed to fetch" when it drew 10080).
var avoid = [][2]int{{15000, 17999}, {23552, 23552}, {9163, 9163}, {8000, 8000},
	{1719, 1720}, {1723, 1723}, {2049, 2049}, {3659, 3659}, {4045, 4045}, {4190, 4190},
	{5060, 5061}, {6000, 6000}, {6566, 6566}, {6665, 6669}, {6679, 6679}, {6697, 6697},
	{10080, 10080}}

// Block returns the first of n consecutive ports that all bound on
// 127.0.0.1 a moment ago and that no other test of this repository holds;
// they stay reserved for tests of this repository until tb's cleanup. It
// fails the test when no such block is found.
func Block(tb testing.TB, n int) int {
	tb.Helper()
	if n < 1 || n > 4096 {
		tb.Fatalf("freeports: block of %d ports: want 1 to 4096", n)
	}
	spans := searchSpans(ephemeral())
	dir, lockErr := lockDir()
	for range 2000 {
		start, ok := randomStart(spans, n)
		if !ok {
			break
		}
		var held []*os.File
		if lockErr == nil {
			var err error
			if held, err = lockChunks(dir, start, n); errors.Is(err, syscall.EWOULDBLOCK) {
				continue // another test holds part of it
			} else if err != nil {
				lockErr = err // go on without reservations
			}
		}
		if allBind(start, n) {
			tb.Cleanup(func() { unlock(held) })
			return start
		}
		unlock(held)
	}
	if lockErr != nil {
		tb.Logf("freeports: no reservation across test processes: %v", lockErr)
	}
	tb.Fatalf("freeports: no %d consecutive free ports on 127.0.0.1 in 1024-65535", n)
	return 0
}

// Port returns one port as [Block] does.
func Port(tb testing.TB) int {
	tb.Helper()
	return Block(tb, 1)
}

// Refusing returns a 127.0.0.1 address where a connection is refused for
// as long as tb runs: a TCP socket is bound to it without listening, which
// keeps the port from anyone else (a port merely closed a moment ago can be
// handed to another test's listener at once) and makes the kernel answer
// a connect with a reset.
func Refusing(tb testing.TB) string {
	tb.Helper()
	// Not SOCK_CLOEXEC, which not every system has: close-on-exec set
	// under the fork lock, so no child started meanwhile inherits it.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		tb.Fatalf("freeports: socket: %v", err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatalf("freeports: bind 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatalf("freeports: getsockname: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// searchSpans returns the spans of 1024-65535 outside eph and avoid.
func searchSpans(eph [2]int) [][2]int {
	spans := [][2]int{{1024, 65535}}
	for _, cut := range append([][2]int{eph}, avoid...) {
		var next [][2]int
		for _, s := range spans {
			if cut[1] < s[0] || cut[0] > s[1] {
				next = append(next, s)
				continue
			}
			if s[0] < cut[0] {
				next = append(next, [2]int{s[0], cut[0] - 1})
			}
			if cut[1] < s[1] {
				next = append(next, [2]int{cut[1] + 1, s[1]})
			}
		}
		spans = next
	}
	return spans
}

// randomStart picks a start, uniformly over every start at which n ports
// fit inside one span.
func randomStart(spans [][2]int, n int) (int, bool) {
	total := 0
	for _, s := range spans {
		total += max(0, s[1]-s[0]+2-n)
	}
	if total == 0 {
		return 0, false
	}
	i := rand.IntN(total)
	for _, s := range spans {
		k := max(0, s[1]-s[0]+2-n)
		if i < k {
			return s[0] + i, true
		}
		i -= k
	}
	return 0, false
}

// ephemeral returns the kernel's ephemeral port range, or Linux's default
// when it cannot be read.
func ephemeral() [2]int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && lo <= hi {
				return [2]int{lo, hi}
			}
		}
	}
	return [2]int{32768, 60999}
}

func allBind(start, n int) bool {
	for p := start; p < start+n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// lockDir returns the directory of the lock files, made if missing.
func lockDir() (string, error) {
	dir := filepath.Join(os.TempDir(), "berth-test-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("make lock directory: %w", err)
	}
	return dir, nil
}

// lockChunks takes the lock of every chunk that ports start..start+n-1
// touch, or none of them; an error wrapping syscall.EWOULDBLOCK says
// another test holds one.
func lockChunks(dir string, start, n int) ([]*os.File, error) {
	var held []*os.File
	for c := start / chunk; c <= (start+n-1)/chunk; c++ {
		path := filepath.Join(dir, strconv.Itoa(c*chunk))
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err == nil {
			if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				f.Close()
			}
		}
		if err != nil {
			unlock(held)
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held = append(held, f)
	}
	return held, nil
}

// unlock releases the locks: closing the file drops its flock.
func unlock(held []*os.File) {
	for _, f := range held {
		f.Close()
	}
}
