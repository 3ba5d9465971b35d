// Command master is berth's per-machine agent: it links to the lanmanager,
// leases ports and runs the children of the needs it is granted.
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
	return cliapp.ExitCode(cliapp.Run(ctx, app, args), stderr, "master")
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                 "master",
		Usage:                "berth's per-machine agent",
		Version:              version.String(),
		EnableBashCompletion: true,
		Suggest:              true,
		Commands:             []*cli.Command{runCommand(), psCommand(), driversCommand()},
		ExitErrHandler:       func(*cli.Context, error) {},
	}
	app.Commands = append(app.Commands, cliapp.CompletionCommand(app.Name, newApp))
	return app
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Value: "masterconfig.json", EnvVars: []string{"BERTH_MASTER_CONFIG"},
		Usage: "config file (master run writes one with the defaults if it is missing)"}
}
