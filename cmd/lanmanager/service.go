package main

import (
	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
)

func serviceCommand() *cli.Command {
	return &cli.Command{
		Name:  "service",
		Usage: "inspect running services",
		Subcommands: []*cli.Command{{
			Name:  "ls",
			Usage: "list placed instances: where they run and on which ports",
			Flags: append(clientFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if err := cliapp.NoArgs(c); err != nil {
					return err
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				list, err := cl.Services(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printList(c.App.Writer, list)
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, []string{s.Name, string(s.State), s.Master, orDash(s.Address), pidString(s.PID), formatPorts(s.Ports), ago(s.Since)})
				}
				table(c.App.Writer, "INSTANCE\tSTATE\tMASTER\tADDRESS\tPID\tPORTS\tSINCE", rows)
				return nil
			},
		}},
	}
}
