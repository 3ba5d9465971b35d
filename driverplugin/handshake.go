package driverplugin

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"berth/driverplugin/driverpb"
)

// ProtocolVersion is the major version of the driver protocol
// (driverpb/driver.proto). go-plugin's handshake checks it: a master and a
// driver of different versions refuse each other, and the master says which
// versions they speak (see ErrProtocolVersion).
const ProtocolVersion = 1

// The magic cookie tells a driver binary that a berth master started it;
// run by hand, the binary says it is a plugin and exits. It is not a secret.
const (
	MagicCookieKey   = "BERTH_DRIVER_PLUGIN"
	MagicCookieValue = "d5c5b1d2-berth-spawn-driver"
)

// Handshake is go-plugin's handshake for berth drivers.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   MagicCookieKey,
	MagicCookieValue: MagicCookieValue,
}

// pluginName is the one plugin a driver binary serves.
const pluginName = "driver"

// grpcPlugin is go-plugin's glue: the server side registers impl, the
// client side returns the generated client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl TaskDriver // server side only
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	driverpb.RegisterDriverServer(s, &server{impl: p.impl})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return driverpb.NewDriverClient(c), nil
}
