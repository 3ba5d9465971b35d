package portoffice

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/freeports"
)

// TestListen binds a real port and checks that the file is a blocking,
// close-on-exec listening socket that accepts, and that the port is then
// taken for net.Listen and the bind check alike.
func TestListen(t *testing.T) {
	r := Range{Start: freeports.Block(t, 1), Size: 1}
	f, err := Listen("127.0.0.1", r.Start)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_NONBLOCK != 0 {
		t.Fatalf("F_GETFL = %#x, %v; want blocking", flags, err)
	}
	fdflags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || fdflags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("F_GETFD = %#x, %v; want close-on-exec", fdflags, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Start))
	if _, err := net.Listen("tcp", addr); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("net.Listen on the bound port: %v, want EADDRINUSE", err)
	}
	err = bindProbe("127.0.0.1", r.Start)
	if !errors.Is(err, syscall.EADDRINUSE) || !isInUse(err) {
		t.Fatalf("bindProbe on the bound port: %v, want EADDRINUSE", err)
	}
	if want := "listen tcp " + addr + ": bind: address already in use"; err.Error() != want {
		t.Fatalf("error %q, want %q (as net.Listen says it)", err, want)
	}
	ln, err := net.FileListener(f) // a copy, as a child would make
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
}

// TestBindProbeAgreesWithNetListen: the bind check sees what net.Listen
// sees, including a listener on every address.
func TestBindProbeAgreesWithNetListen(t *testing.T) {
	r := Range{Start: freeports.Block(t, 2), Size: 2}
	if err := bindProbe("127.0.0.1", r.Start); err != nil {
		t.Fatalf("free port: %v", err)
	}
	all, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(r.Start+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	if err := bindProbe("127.0.0.1", r.Start+1); !isInUse(err) {
		t.Fatalf("port held on 0.0.0.0: %v, want EADDRINUSE", err)
	}
	if err := bindProbe("::1", r.Start); err != nil && !strings.Contains(err.Error(), "cannot assign") {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	if _, err := Listen("not-an-ip", r.Start); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("Listen(not-an-ip): %v", err)
	}
}
