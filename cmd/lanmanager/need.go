package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"berth/lan"
	"berth/needs"
)

func needCommand() *cli.Command {
	return &cli.Command{
		Name:  "need",
		Usage: "declare and inspect needs",
		Subcommands: []*cli.Command{
			needAddCommand(), needLsCommand(), needShowCommand(), needScaleCommand(), needRmCommand(),
		},
	}
}

func needAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "declare a need",
		ArgsUsage: "NAME -- COMMAND [ARG...]",
		Flags: append(clientFlags(),
			&cli.IntFlag{Name: "instances", Value: 1, Usage: "number of instances"},
			&cli.StringFlag{Name: "protocols", Usage: "ports each instance gets: tcp,http,ws"},
			&cli.StringSliceFlag{Name: "env", Usage: "extra environment K=V (repeatable)"},
			&cli.StringFlag{Name: "machine", Usage: "pin to the master of this name"},
			jsonFlag(),
		),
		Action: func(c *cli.Context) error {
			pos, command, err := splitArgs(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if err := wantArgs(pos, "NAME"); err != nil {
				return err
			}
			if len(command) == 0 {
				return cli.Exit("command: missing; put it after --, e.g. need add web -- ./server --port ${PORT}", 2)
			}
			protos, err := needs.ParseProtocols(c.String("protocols"))
			if err != nil {
				return cli.Exit("--protocols: "+err.Error(), 2)
			}
			env, err := needs.ParseEnv(c.StringSlice("env"))
			if err != nil {
				return cli.Exit("--env: "+err.Error(), 2)
			}
			n := c.Int("instances")
			st, err := newClient(c).AddNeed(c.Context, lan.NeedSpec{Name: pos[0], Command: command, Instances: &n,
				Protocols: protos, Env: env, Machine: c.String("machine")})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			fmt.Fprintf(c.App.Writer, "need %s added: %d instance(s) of %s\n", st.Name, st.Instances, strings.Join(st.Command, " "))
			return nil
		},
	}
}

func needLsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list needs",
		Flags: append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			list, err := newClient(c).Needs(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if list == nil {
					list = []*needs.NeedStatus{}
				}
				return printJSON(c.App.Writer, list)
			}
			var rows [][]string
			for _, n := range list {
				rows = append(rows, []string{n.Name, strconv.Itoa(n.Instances), strconv.Itoa(n.Running), strconv.Itoa(n.Pending),
					formatProtocols(n.Protocols), orDash(n.Machine), strings.Join(n.Command, " ")})
			}
			table(c.App.Writer, "NAME\tINSTANCES\tRUNNING\tPENDING\tPROTOCOLS\tMACHINE\tCOMMAND", rows)
			return nil
		},
	}
}

func needShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a need, its instances and why any is pending",
		ArgsUsage: "NAME",
		Flags:     append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			pos, err := positional(c, "NAME")
			if err != nil {
				return err
			}
			st, err := newClient(c).Need(c.Context, pos[0])
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "name:       %s\ncommand:    %s\ninstances:  %d (%d running, %d pending)\nprotocols:  %s\n",
				st.Name, strings.Join(st.Command, " "), st.Instances, st.Running, st.Pending, formatProtocols(st.Protocols))
			if st.Machine != "" {
				fmt.Fprintf(w, "machine:    %s\n", st.Machine)
			}
			for _, k := range sortedKeys(st.Env) {
				fmt.Fprintf(w, "env:        %s=%s\n", k, st.Env[k])
			}
			for _, r := range st.Reasons {
				fmt.Fprintf(w, "why:        %s\n", r)
			}
			fmt.Fprintln(w)
			var rows [][]string
			for _, in := range st.InstanceList {
				next := "-"
				if in.State == needs.Backoff {
					next = "in " + time.Until(in.NextAttempt).Round(time.Millisecond).String()
				}
				rows = append(rows, []string{in.Name, string(in.State), orDash(in.Master), pidString(in.PID), formatPorts(in.Ports),
					strconv.Itoa(in.Restarts), orDash(in.LastExit), next, orDash(in.Reason)})
			}
			table(w, "INSTANCE\tSTATE\tMASTER\tPID\tPORTS\tRESTARTS\tLAST EXIT\tNEXT ATTEMPT\tREASON", rows)
			return nil
		},
	}
}

func pidString(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func needScaleCommand() *cli.Command {
	return &cli.Command{
		Name:      "scale",
		Usage:     "set the number of instances",
		ArgsUsage: "NAME N",
		Flags:     append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			pos, err := positional(c, "NAME", "N")
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(pos[1])
			if err != nil {
				return cli.Exit(fmt.Sprintf("N: %q is not a whole number", pos[1]), 2)
			}
			st, err := newClient(c).Scale(c.Context, pos[0], n)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			fmt.Fprintf(c.App.Writer, "need %s scaled to %d\n", st.Name, st.Instances)
			return nil
		},
	}
}

func needRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a need and stop its instances",
		ArgsUsage: "NAME",
		Flags:     clientFlags(),
		Action: func(c *cli.Context) error {
			pos, err := positional(c, "NAME")
			if err != nil {
				return err
			}
			if err := newClient(c).RemoveNeed(c.Context, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "need %s removed; its instances are stopping\n", pos[0])
			return nil
		},
	}
}
