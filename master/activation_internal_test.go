package master

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"berth/internal/freeports"
	"berth/needs"
	"berth/portoffice"
	"berth/spawn"
)

// activationAgent is the part of an Agent that leasePorts uses, on a port
// office over a free block of size ports on 127.0.0.1. A non-nil probe
// replaces the office's bind check.
func activationAgent(t *testing.T, size int, probe func(string, int) error) (*Agent, portoffice.Range) {
	t.Helper()
	r := portoffice.Range{Start: freeports.Block(t, 2*size), Size: size} // http, then tcp
	o, err := portoffice.Open(filepath.Join(t.TempDir(), "ports.db"), portoffice.Options{
		Ranges: map[needs.Protocol]portoffice.Range{needs.HTTP: r, needs.TCP: {Start: r.End() + 1, Size: size}},
		Host:   "127.0.0.1", NoSync: true, Probe: probe, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return &Agent{office: o, addr: "127.0.0.1", name: "m1", log: slog.New(slog.NewTextHandler(t.Output(), nil))}, r
}

// holdPort binds port on 127.0.0.1 until the test ends: a process berth
// does not know.
func holdPort(t *testing.T, port int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

func activated(protos ...needs.Protocol) *child {
	return &child{alloc: "a1", instance: "web.0", need: needs.Need{Name: "web", Protocols: protos, SocketActivation: true}}
}

// listenerPort returns the port f listens on, checking that it accepts.
func listenerPort(t *testing.T, f *os.File) int {
	t.Helper()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestLeasePortsBindsInProtocolOrder(t *testing.T) {
	a, r := activationAgent(t, 3, nil)
	c := activated(needs.TCP, needs.HTTP)
	ports, files, err := a.leasePorts(c)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(files)
	if ports[needs.HTTP] != r.Start || ports[needs.TCP] != r.End()+1 {
		t.Fatalf("ports %v", ports)
	}
	if len(files) != 2 || listenerPort(t, files[0]) != ports[needs.TCP] || listenerPort(t, files[1]) != ports[needs.HTTP] {
		t.Fatalf("files %v do not listen on tcp then http %v", files, ports)
	}
	// The master holds the ports until the child has them: nobody else
	// can bind them now.
	for _, port := range ports {
		if _, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("port %d: %v, want EADDRINUSE", port, err)
		}
	}
}

func TestLeasePortsPlain(t *testing.T) {
	a, r := activationAgent(t, 3, nil)
	c := activated(needs.HTTP)
	c.need.SocketActivation = false
	ports, files, err := a.leasePorts(c)
	if err != nil || files != nil || ports[needs.HTTP] != r.Start {
		t.Fatalf("leasePorts = %v, %v, %v", ports, files, err)
	}
	holdPort(t, r.Start) // not bound by the master
}

// TestLeasePortsTakenAfterCheck plays the race socket activation closes:
// the office's bind check passes (the probe says so), but an outside
// process holds the port when the master binds it. The port is
// quarantined with the bind error and the next one leased and bound.
func TestLeasePortsTakenAfterCheck(t *testing.T) {
	a, r := activationAgent(t, 3, func(string, int) error { return nil })
	holdPort(t, r.Start)
	c := activated(needs.HTTP)
	ports, files, err := a.leasePorts(c)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(files)
	if ports[needs.HTTP] != r.Start+1 || listenerPort(t, files[0]) != r.Start+1 {
		t.Fatalf("ports %v, want http %d", ports, r.Start+1)
	}
	if got := a.office.Owned(c.alloc); got[needs.HTTP] != r.Start+1 || len(got) != 1 {
		t.Fatalf("office: %s owns %v", c.alloc, got)
	}
	qs := a.office.Quarantined()
	if len(qs) != 1 || qs[0].Port != r.Start || qs[0].Proto != needs.HTTP || !strings.Contains(qs[0].Reason, "address already in use") {
		t.Fatalf("Quarantined = %+v, want http %d for address in use", qs, r.Start)
	}
}

// TestLeasePortsGivesUp: when every port is taken after the check, the
// master stops after maxBindAttempts, holds no lease and leaks no socket.
func TestLeasePortsGivesUp(t *testing.T) {
	a, r := activationAgent(t, 5, func(string, int) error { return nil })
	for p := r.Start; p <= r.End(); p++ {
		holdPort(t, p)
	}
	fds := openFDs(t)
	c := activated(needs.TCP, needs.HTTP)
	_, files, err := a.leasePorts(c)
	if err == nil {
		closeFiles(files)
		t.Fatal("leasePorts succeeded")
	}
	want := fmt.Sprintf("master m1: socket activation: listen tcp 127.0.0.1:%d: bind: address already in use (attempt 3 of 3)", r.Start+2)
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if got := a.office.Owned(c.alloc); got != nil {
		t.Fatalf("%s still owns %v", c.alloc, got)
	}
	if qs := a.office.Quarantined(); len(qs) != 3 {
		t.Fatalf("Quarantined = %+v, want the 3 ports tried", qs)
	}
	if got := openFDs(t); got != fds {
		t.Fatalf("%d open fds after, %d before", got, fds)
	}
}

// TestLeasePortsOtherBindError: a bind error other than EADDRINUSE
// quarantines nothing and is not retried.
func TestLeasePortsOtherBindError(t *testing.T) {
	a, _ := activationAgent(t, 3, func(string, int) error { return nil })
	a.addr = "192.0.2.1" // not ours: EADDRNOTAVAIL
	_, _, err := a.leasePorts(activated(needs.HTTP))
	if !errors.Is(err, syscall.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "attempt 1 of 3") {
		t.Fatalf("leasePorts: %v, want EADDRNOTAVAIL on the first attempt", err)
	}
	if qs := a.office.Quarantined(); len(qs) != 0 {
		t.Fatalf("Quarantined = %+v", qs)
	}
}

func TestActivate(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	spec := spawn.Spec{Env: []string{"A=1"}}
	activate(&spec, needs.Need{Protocols: []needs.Protocol{needs.HTTP, needs.WS}}, []*os.File{r, w})
	if !slices.Equal(spec.ExtraFiles, []*os.File{r, w}) || !spec.ListenPID {
		t.Fatalf("spec %+v", spec)
	}
	if want := []string{"A=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=http:ws"}; !slices.Equal(spec.Env, want) {
		t.Fatalf("env %q, want %q", spec.Env, want)
	}
	plain := spawn.Spec{Env: []string{"A=1"}}
	activate(&plain, needs.Need{Protocols: []needs.Protocol{needs.HTTP}}, nil)
	if plain.ExtraFiles != nil || plain.ListenPID || len(plain.Env) != 1 {
		t.Fatalf("without sockets: %+v", plain)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
