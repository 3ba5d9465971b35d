// Command v2driver is a driver of a future protocol version 2, with berth's
// magic cookie: the tests check that a master of version 1 refuses it
// with a clear message.
package main

import (
	"github.com/hashicorp/go-plugin"

	"berth/driverplugin"
)

func main() {
	h := driverplugin.Handshake
	h.ProtocolVersion = 2
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: h,
		Plugins:         plugin.PluginSet{"driver": &plugin.NetRPCUnsupportedPlugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
