package mesh

import (
	"net"
	"syscall"
)

// listenConfig sets the client keep-alive and TCP_NODELAY on the listening
// socket, before it listens, so that every socket accepted on it inherits
// them, and none on each accepted one.
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			k := clientKeepAlive
			for _, o := range []struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(k.Idle.Seconds())},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(k.Interval.Seconds())},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, k.Count},
				{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
			} {
				if err == nil {
					err = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v)
				}
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	}}
}
