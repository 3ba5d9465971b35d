package child

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"berth/internal/freeports"
	"berth/needs"
)

// resetInherited forgets what an earlier test read, and sets the LISTEN_*
// variables (unset for ""), restoring them at the end of the test.
func resetInherited(t *testing.T, pid, fds, names string) {
	t.Helper()
	inherited.once = sync.Once{}
	inherited.err, inherited.ls = nil, nil
	for k, v := range map[string]string{EnvListenPID: pid, EnvListenFDs: fds, EnvListenNames: names} {
		t.Setenv(k, v)
		if v == "" {
			os.Unsetenv(k)
		}
	}
}

// TestListenEnv covers the variables without touching any fd: none set,
// meant for another process, malformed. Every case unsets the variables.
func TestListenEnv(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		name            string
		pid, fds, names string
		field, msg      string
	}{
		{name: "none"},
		{name: "another process", pid: "1", fds: "2", names: "http:tcp"},
		{name: "no sockets", pid: self, fds: "0"},
		{name: "bad pid", pid: "x", fds: "1", names: "http", field: EnvListenPID, msg: `"x" is not a pid`},
		{name: "fds without pid", fds: "1", names: "http", field: EnvListenPID, msg: `"" is not a pid`},
		{name: "bad fds", pid: self, fds: "-1", names: "http", field: EnvListenFDs, msg: `"-1" is not a number of sockets`},
		{name: "too many fds", pid: self, fds: "1000", field: EnvListenFDs, msg: "(0-64)"},
		{name: "no names", pid: self, fds: "1", field: EnvListenNames, msg: `"" does not name the 1 sockets`},
		{name: "too few names", pid: self, fds: "2", names: "http", field: EnvListenNames, msg: `"http" does not name the 2 sockets`},
		{name: "same name twice", pid: self, fds: "2", names: "http:http", field: EnvListenNames, msg: "names a socket twice"},
		{name: "empty name", pid: self, fds: "2", names: ":http", field: EnvListenNames, msg: "names a socket twice or not at all"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resetInherited(t, tt.pid, tt.fds, tt.names)
			ls, err := Listeners()
			for _, k := range []string{EnvListenPID, EnvListenFDs, EnvListenNames} {
				if v, ok := os.LookupEnv(k); ok {
					t.Errorf("%s=%q still set", k, v)
				}
			}
			if tt.field == "" {
				if err != nil || len(ls) != 0 {
					t.Fatalf("Listeners = %v, %v; want none", ls, err)
				}
				return
			}
			var fe *needs.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(err.Error(), tt.msg) || !errors.Is(err, needs.ErrInvalid) {
				t.Fatalf("Listeners: %v; want a FieldError for %s containing %q", err, tt.field, tt.msg)
			}
			if _, err2 := Listen("http"); !errors.Is(err2, needs.ErrInvalid) {
				t.Fatalf("Listen after a bad environment: %v, want the same error", err2)
			}
		})
	}
}

// TestListenFallback: without inherited sockets Listen listens on
// BERTH_HOST and the protocol's port, and says which variable is missing.
func TestListenFallback(t *testing.T) {
	resetInherited(t, "1", "1", "http") // for another process: ignored
	port := freeports.Port(t)
	t.Setenv(EnvHost, "127.0.0.1")
	t.Setenv(needs.HTTP.EnvName(), strconv.Itoa(port))
	t.Setenv(needs.WS.EnvName(), "")
	l, err := Listen("http")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().String(); got != "127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("Listen(http) on %s, want 127.0.0.1:%d", got, port)
	}
	_, err = Listen("ws")
	if !errors.Is(err, ErrNoPort) || !strings.Contains(err.Error(), "BERTH_PORT_WS") {
		t.Fatalf("Listen(ws): %v, want ErrNoPort naming BERTH_PORT_WS", err)
	}
	t.Setenv(needs.TCP.EnvName(), "99999")
	if _, err := Listen("tcp"); !errors.Is(err, needs.ErrInvalid) {
		t.Fatalf("Listen(tcp) with a bad port: %v", err)
	}
}

// FuzzListenEnv feeds arbitrary LISTEN_* values to their parser: it must
// not panic, and what it accepts names as many distinct sockets as it
// says, within the bound.
func FuzzListenEnv(f *testing.F) {
	f.Add("42", "2", "http:tcp")
	f.Add("42", "1", "")
	f.Add("7", "1", "http")
	f.Add("42", "65", "a")
	f.Add("", "", "")
	f.Add("42", "2", "http:http")
	f.Add("-1", "x", "::")
	f.Fuzz(func(t *testing.T, pid, fds, names string) {
		got, err := parseListenEnv(pid, fds, names, 42)
		if err != nil {
			if !errors.Is(err, needs.ErrInvalid) {
				t.Fatalf("error %v does not match needs.ErrInvalid", err)
			}
			return
		}
		if len(got) == 0 {
			return
		}
		if pid != "42" && strings.TrimLeft(pid, "+0") != "42" {
			t.Fatalf("accepted sockets for pid %q", pid)
		}
		if n, _ := strconv.Atoi(fds); n != len(got) || n > maxListenFDs {
			t.Fatalf("LISTEN_FDS=%q gave %d names", fds, len(got))
		}
		for i, name := range got {
			if name == "" || slices.Contains(got[:i], name) {
				t.Fatalf("names %q", got)
			}
		}
	})
}
