// Command lanmanager is berth's LAN manager: the server that holds the
// needs (serve, dev) and the client that declares and inspects them.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runApp(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runApp runs the command line args and returns the exit code (see
// package cliapp); errors go to stderr.
func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	return cliapp.ExitCode(cliapp.Run(ctx, app, args), stderr, "lanmanager")
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                      "lanmanager",
		Usage:                     "berth's LAN manager: declare needs, see services and masters",
		Version:                   version.String(),
		DisableSliceFlagSeparator: true,
		EnableBashCompletion:      true,
		Suggest:                   true,
		Commands: []*cli.Command{
			serveCommand(), devCommand(), needCommand(), serviceCommand(), masterCommand(), ipcCommand(), logsCommand(), eventsCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // runApp prints and exits
	}
	app.Commands = append(app.Commands, cliapp.CompletionCommand(app.Name, newApp))
	return app
}
