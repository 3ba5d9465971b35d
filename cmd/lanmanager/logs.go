package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/needs"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "show an instance's output (stdout and stderr), read through its master",
		ArgsUsage: "INSTANCE",
		Description: "INSTANCE is <need>.<index>, e.g. web.0. The master that runs it (or where it last ran,\n" +
			"while it backs off) sends its log file; with --follow the stream goes on across log rotations\n" +
			"until you press Ctrl-C.",
		Flags: append(clientFlags(),
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing what is written next"},
			&cli.IntFlag{Name: "tail", Aliases: []string{"n"}, Usage: "start with the last N lines (0: the whole current file)"},
		),
		Action: func(c *cli.Context) error {
			pos, err := cliapp.Positional(c, "INSTANCE")
			if err != nil {
				return err
			}
			name := pos[0]
			if _, _, err := needs.ParseInstanceName(name); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if n := c.Int("tail"); n < 0 {
				return cli.Exit(fmt.Sprintf("--tail: want a number of lines >= 0, got %d", n), 2)
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			return cl.Logs(c.Context, name, c.Int("tail"), c.Bool("follow"), c.App.Writer)
		},
	}
}
