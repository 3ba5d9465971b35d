//go:build !linux

package mesh

import (
	"net"
	"syscall"
)

// holdHandshakeACK does nothing here: TCP_QUICKACK is Linux's.
func holdHandshakeACK(string, string, syscall.RawConn) error { return nil }

// quickACK does nothing here.
func quickACK(net.Conn) {}
