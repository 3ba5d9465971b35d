package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"berth/needs"
)

func masterCommand() *cli.Command {
	return &cli.Command{
		Name:  "master",
		Usage: "inspect masters",
		Subcommands: []*cli.Command{{
			Name:  "ls",
			Usage: "list masters",
			Flags: append(clientFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				list, err := newClient(c).Masters(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if list == nil {
						list = []*needs.Master{}
					}
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, m := range list {
					state := "connected"
					if !m.Connected {
						state = "disconnected"
					}
					var ranges []string
					for _, p := range needs.Protocols {
						if r, ok := m.Ranges[p]; ok {
							ranges = append(ranges, fmt.Sprintf("%s:%d-%d(%d free)", p, r[0], r[1], m.Free[p]))
						}
					}
					rows = append(rows, []string{m.Name, state, orDash(m.Address), strconv.Itoa(m.Instances), orDash(strings.Join(ranges, " ")), m.ID})
				}
				table(c.App.Writer, "NAME\tSTATE\tADDRESS\tINSTANCES\tRANGES\tID", rows)
				return nil
			},
		}},
	}
}
