//go:build !linux

package mesh

import "net"

// listenConfig sets the client keep-alive on each accepted socket.
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAliveConfig: clientKeepAlive}
}
