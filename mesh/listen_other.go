//go:build !linux

package mesh

import (
	"net"
	"syscall"
)

// holdHandshakeACK does nothing here: TCP_QUICKACK is Linux's.
func holdHandshakeACK(string, string, syscall.RawConn) error { return nil }

// listenConfig sets the client keep-alive on each accepted socket.
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAliveConfig: clientKeepAlive}
}
