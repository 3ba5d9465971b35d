// Command master is berth's per-machine agent: it links to the lanmanager,
// leases ports and runs the children of the needs it is granted.
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
	if err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, "master:", ec.Error())
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "master:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:           "master",
		Usage:          "berth's per-machine agent",
		Commands:       []*cli.Command{runCommand(), psCommand()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Value: "masterconfig.json", EnvVars: []string{"BERTH_MASTER_CONFIG"},
		Usage: "config file; created with defaults if missing"}
}
