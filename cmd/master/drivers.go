package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/master"
	"berth/pipes"
)

func driversCommand() *cli.Command {
	return &cli.Command{
		Name:  "drivers",
		Usage: "list this master's spawn drivers and their fingerprints, through its control socket (docs/drivers.md)",
		Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			cfg, err := master.LoadConfig(c.String("config"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			list := []pipes.DriverInfo{}
			if err := control(c.Context, cfg.RuntimeDirectory, pipes.TypeDrivers, &list); err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return printDrivers(c.App.Writer, list)
		},
	}
}

// printDrivers writes the drivers as a table, with the reason of each
// unavailable one under it.
func printDrivers(w io.Writer, list []pipes.DriverInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tAVAILABLE\tSUPPORTS\tPID\tRESTARTS")
	for _, d := range list {
		var sup []string
		if d.Signals {
			sup = append(sup, "signals")
		}
		if d.ResourceLimits {
			sup = append(sup, "limits")
		}
		if d.SocketActivation {
			sup = append(sup, "sockets")
		}
		version, pid := d.Version, "-"
		if d.Builtin {
			version = "built in"
		}
		if d.PID > 0 {
			pid = strconv.Itoa(d.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%d\n", d.Name, orDash(version), d.Available, orDash(strings.Join(sup, ",")), pid, d.Restarts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range list {
		if !d.Available {
			if _, err := fmt.Fprintf(w, "%s: %s\n", d.Name, d.Reason); err != nil {
				return err
			}
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
