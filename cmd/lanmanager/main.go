// Command lanmanager is berth's LAN manager: the server that holds the
// needs (serve, dev) and the client that declares and inspects them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newApp().RunContext(ctx, os.Args)
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if ec.Error() != "" {
			fmt.Fprintln(os.Stderr, "lanmanager:", ec.Error())
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "lanmanager:", err)
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:                      "lanmanager",
		Usage:                     "berth's LAN manager: declare needs, see services and masters",
		DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{
			serveCommand(), devCommand(), needCommand(), serviceCommand(), masterCommand(), logsCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
	}
}
