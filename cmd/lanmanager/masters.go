package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
	"berth/needs"
)

func masterCommand() *cli.Command {
	return &cli.Command{
		Name:        "master",
		Usage:       "inspect and drain masters",
		Subcommands: []*cli.Command{masterLsCommand(), masterDrainCommand(), masterUndrainCommand()},
	}
}

func masterLsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list masters, their ingress ports and their external drivers (as of their last link)",
		Flags: append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			list, err := cl.Masters(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printList(c.App.Writer, list)
			}
			var rows [][]string
			for _, m := range list {
				state := "connected"
				if !m.Connected {
					state = "disconnected"
				}
				if m.Draining {
					state += ", draining"
				}
				free := make([]string, len(needs.Protocols))
				for i, p := range needs.Protocols {
					free[i] = "-"
					if _, ok := m.Ranges[p]; ok {
						free[i] = strconv.Itoa(m.Free[p])
					}
				}
				rows = append(rows, []string{m.Name, state, orDash(m.Address), strconv.Itoa(m.Instances), strings.Join(free, "/"),
					orDash(m.Version), ago(m.LastSeen), shortID(m.ID)})
			}
			table(c.App.Writer, "NAME\tSTATE\tADDRESS\tINSTANCES\tFREE TCP/HTTP/WS\tVERSION\tLAST SEEN\tID", rows)
			for _, m := range list {
				for _, d := range m.Drivers {
					if d.Name != needs.DefaultDriver || !d.Available {
						fmt.Fprintf(c.App.Writer, "%s driver %s\n", m.Name, d)
					}
				}
				for _, p := range m.Ingress {
					fmt.Fprintf(c.App.Writer, "%s ingress %s %s:%d: %s\n", m.Name, p.Need, p.Protocol, p.Port, ingressState(p))
				}
			}
			return nil
		},
	}
}

// shortID is the first 8 characters of a master id, as `master ls` shows
// it (the whole id is in --json).
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return orDash(id)
}

func masterDrainCommand() *cli.Command {
	return &cli.Command{
		Name: "drain",
		Usage: "give a master no new work and move its instances away: each is started on another master " +
			"and approved before its old child is stopped",
		ArgsUsage: "NAME",
		Flags: append(clientFlags(),
			&cli.BoolFlag{Name: "wait", Usage: "wait until the master holds no instance"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "with --wait, give up after this long"},
			jsonFlag(),
		),
		Action: func(c *cli.Context) error {
			pos, err := cliapp.Positional(c, "NAME")
			if err != nil {
				return err
			}
			if err := checkWaitFlags(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			m, err := cl.Drain(c.Context, pos[0])
			if err != nil {
				return err
			}
			if c.Bool("wait") {
				if m, err = waitDrained(c, cl, pos[0], c.Duration("timeout")); err != nil {
					return err
				}
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, m)
			}
			switch {
			case m.Instances == 0:
				fmt.Fprintf(c.App.Writer, "master %s draining; it holds no instance\n", m.Name)
			default:
				fmt.Fprintf(c.App.Writer, "master %s draining; %d instance(s) to move (see `master ls`, or drain --wait)\n", m.Name, m.Instances)
			}
			return nil
		},
	}
}

// waitDrained polls the masters until name holds no instance. On timeout
// it says what is left and why.
func waitDrained(c *cli.Context, cl *lan.Client, name string, timeout time.Duration) (*needs.Master, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	left := -1
	for {
		list, err := cl.Masters(c.Context)
		if err != nil {
			return nil, err
		}
		var m *needs.Master
		for _, e := range list {
			if e.Name == name && (m == nil || e.Connected) {
				m = e
			}
		}
		if m == nil || m.Instances == 0 {
			if m == nil {
				m = &needs.Master{Name: name, Draining: true}
			}
			return m, nil
		}
		if m.Instances != left && !c.Bool("json") {
			fmt.Fprintf(c.App.ErrWriter, "master %s: %d instance(s) left\n", name, m.Instances)
			left = m.Instances
		}
		if time.Now().After(deadline) {
			return nil, cli.Exit(fmt.Sprintf("master %s still holds %d instance(s) after %s%s", name, m.Instances, timeout, stuckReasons(c, cl, name)), 1)
		}
		select {
		case <-c.Context.Done():
			return nil, c.Context.Err()
		case <-tick.C:
		}
	}
}

// stuckReasons lists why the instances on a draining master have not moved.
func stuckReasons(c *cli.Context, cl *lan.Client, name string) string {
	svcs, err := cl.Services(c.Context)
	if err != nil {
		return ""
	}
	var out []string
	for _, s := range svcs {
		if s.Master == name {
			out = append(out, fmt.Sprintf("\n  %s (%s): %s", s.Name, s.State, orDash(s.Reason)))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "")
}

func masterUndrainCommand() *cli.Command {
	return &cli.Command{
		Name:      "undrain",
		Usage:     "end a master's drain: it takes new work again; replacements still starting are stopped",
		ArgsUsage: "NAME",
		Flags:     append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			pos, err := cliapp.Positional(c, "NAME")
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			m, err := cl.Undrain(c.Context, pos[0])
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, m)
			}
			fmt.Fprintf(c.App.Writer, "master %s undrained; it takes new work again\n", m.Name)
			return nil
		},
	}
}

// ingressState says whether an ingress port is open, or why not.
func ingressState(p needs.IngressPort) string {
	if p.Open {
		return "open"
	}
	if p.Error != "" {
		return "cannot open: " + p.Error
	}
	return "not open yet"
}
