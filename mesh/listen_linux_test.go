package mesh

import (
	"net"
	"syscall"
	"testing"
)

// TestListenKeepAliveInherited: a connection accepted on Listen's listener
// probes as Go's default would have set it, and has TCP_NODELAY, with no
// setsockopt of its own.
func TestListenKeepAliveInherited(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rc, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]int{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
		"TCP_NODELAY":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	}
	rc.Control(func(fd uintptr) {
		for name, w := range want {
			v, err := syscall.GetsockoptInt(int(fd), w[0], w[1])
			if err != nil || v != w[2] {
				t.Errorf("accepted socket: %s = %d, %v; want %d", name, v, err, w[2])
			}
		}
	})
}
