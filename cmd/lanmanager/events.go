package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "follow the lanmanager's events (needs, instances, masters) until Ctrl-C",
		Description: "One line per event: the time, the kind and what it is about. With --json, one JSON object\n" +
			"per line, as the /v1/events WebSocket sends them.",
		Flags: append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			w := c.App.Writer
			asJSON := c.Bool("json")
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			return cl.Events(c.Context, func(e lan.Event) error {
				if asJSON {
					b, err := json.Marshal(e)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(w, "%s\n", b)
					return err
				}
				_, err := fmt.Fprintf(w, "%s  %s\n", e.Time.Local().Format(time.TimeOnly+".000"), e.Describe())
				return err
			})
		},
	}
}
