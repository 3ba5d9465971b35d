package driverplugin

import (
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Serve serves impl as a berth driver: a driver binary's main is
//
//	func main() { driverplugin.Serve(myDriver) }
//
// It speaks go-plugin's handshake (ProtocolVersion, the magic cookie,
// AutoMTLS) on stdout and returns when the master kills the plugin. Run by
// hand, without the master's cookie, the binary says so and exits 1.
//
// Log with Logger(): stdout belongs to the handshake, and the master reads
// stderr as JSON lines and logs them through its own logger, tagged with
// the driver's name.
//
// A plugin outlives a master that crashes or restarts (the next one
// re-attaches to it), so its stderr may become a broken pipe: Serve catches
// SIGPIPE so that writing a log line then fails instead of killing the
// driver (the lines are lost until the driver is restarted). Catching,
// unlike ignoring, is not inherited by the tasks the driver starts.
func Serve(impl TaskDriver) {
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE) // nobody reads it: see above
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{pluginName: &grpcPlugin{impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info,
			Name: "go-plugin"}),
	})
}

// Logger returns the logger a driver should use: JSON lines on stderr, in
// the form the master's go-plugin client parses (@level, @message,
// @timestamp, and the attributes).
func Logger() *slog.Logger { return newJSONLogger(os.Stderr) }

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				// The layout go-plugin's client parses; anything else
				// makes it log the whole line verbatim at debug level.
				a.Key = "@timestamp"
				a.Value = slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			}
			return a
		},
	}))
}
