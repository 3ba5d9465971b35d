package mesh

import (
	"net"
	"syscall"
)

// holdHandshakeACK is a net.Dialer's Control for Config.ClientFirst: the
// socket holds back the handshake's last ACK until it sends data. Best
// effort, as in the loop's dial: a socket that refuses is dialled as any
// other.
func holdHandshakeACK(_, _ string, c syscall.RawConn) error {
	c.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0)
	})
	return nil
}

// quickACK puts a socket dialled with holdHandshakeACK back to quick ACKs
// once it has sent (see pumpEnd.sent in pump_linux.go).
func quickACK(c net.Conn) {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
			})
		}
	}
}
