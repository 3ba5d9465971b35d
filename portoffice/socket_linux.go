package portoffice

import (
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Listen binds host:port, with SO_REUSEADDR as net.Listen sets it, listens
// on it and returns the socket as a file: in blocking mode, close-on-exec,
// and not registered with Go's poller, ready to be passed to a child as an
// inherited listening socket (socket activation). host must be an IP
// address, "" meaning all interfaces (0.0.0.0); port 0 picks a free port.
// Errors are *net.OpError values like those of net.Listen, e.g. "listen tcp
// 127.0.0.1:16001: bind: address already in use", matching the
// syscall.Errno (syscall.EADDRINUSE when another socket holds the port).
func Listen(host string, port int) (*os.File, error) {
	fd, err := listenFD(host, port)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "tcp:"+net.JoinHostPort(host, strconv.Itoa(port))), nil
}

// bindProbe checks that host:port can be bound and listened on right now,
// as net.Listen would, and closes the socket at once. It makes the system
// calls directly, which costs about half of what net.Listen and Close do.
func bindProbe(host string, port int) error {
	fd, err := listenFD(host, port)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func listenFD(host string, port int) (int, error) {
	ip := net.IPv4zero
	if host != "" {
		ip = net.ParseIP(host)
	}
	opErr := func(call string, err error) error {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: ip, Port: port},
			Err: os.NewSyscallError(call, err)}
	}
	if ip == nil {
		return -1, &net.OpError{Op: "listen", Net: "tcp", Err: &net.AddrError{Err: "not an IP address", Addr: host}}
	}
	family := unix.AF_INET6
	var sa unix.Sockaddr
	if ip4 := ip.To4(); ip4 != nil {
		family = unix.AF_INET
		sa4 := &unix.SockaddrInet4{Port: port}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		sa6 := &unix.SockaddrInet6{Port: port}
		copy(sa6.Addr[:], ip.To16())
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, opErr("socket", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, opErr("setsockopt", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, opErr("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return -1, opErr("listen", err)
	}
	return fd, nil
}
