package mesh

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls on its sockets, raw: the sockets are
// non-blocking and none of these calls waits, so they skip the
// scheduler's bookkeeping of a blocking call. With that bookkeeping every
// call put the loop's P in a system-call state that the scheduler's
// monitor watches, which kept the monitor waking about once per proxied
// connection.

func rawErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// read and write are recv(2) and send(2), as HAProxy makes them: the
// socket calls, not the file ones (no file-position lock), and no SIGPIPE
// for a peer that has gone.
func read(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func write(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawAccept is accept4(2) of a non-blocking, close-on-exec socket, with
// the peer's address.
func rawAccept(fd int) (int, netip.Addr, error) {
	var rsa unix.RawSockaddrAny
	l := uint32(unix.SizeofSockaddrAny)
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.Addr{}, e
	}
	var ip netip.Addr
	switch rsa.Addr.Family {
	case unix.AF_INET:
		ip = netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa)).Addr)
	case unix.AF_INET6:
		ip = netip.AddrFrom16((*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa)).Addr).Unmap()
	}
	return int(nfd), ip, nil
}

// rawConnect opens a non-blocking TCP socket with TCP_NODELAY and
// SO_KEEPALIVE (the system's timings: backendKeepAlive) and starts
// connecting it to ap; with clientFirst, with TCP_QUICKACK off
// (Config.ClientFirst).
func rawConnect(ap netip.AddrPort, clientFirst bool) (int, error) {
	family := unix.AF_INET
	if !ap.Addr().Is4() {
		family = unix.AF_INET6
	}
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	rawSetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	rawSetInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	if clientFirst {
		rawSetInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
	}
	port := [2]byte{byte(ap.Port() >> 8), byte(ap.Port())} // network order
	var ptr unsafe.Pointer
	var size uintptr
	if family == unix.AF_INET {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
		*(*[2]byte)(unsafe.Pointer(&sa.Port)) = port
		ptr, size = unsafe.Pointer(&sa), unsafe.Sizeof(sa)
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
		*(*[2]byte)(unsafe.Pointer(&sa.Port)) = port
		ptr, size = unsafe.Pointer(&sa), unsafe.Sizeof(sa)
	}
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(ptr), size)
	if e != 0 && e != unix.EINPROGRESS {
		rawClose(fd)
		return -1, e
	}
	return fd, nil
}

func rawSetInt(fd, level, opt, v int) error {
	v32 := int32(v)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v32)), 4, 0)
	return rawErr(e)
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return rawErr(e)
}

func rawShutdown(fd, how int) error {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return rawErr(e)
}

// rawClose closes a socket the loop made or accepted; without SO_LINGER,
// which the loop never sets, close(2) of a socket does not wait.
func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
