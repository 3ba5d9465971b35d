package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/master"
	"berth/needs"
	"berth/pipes"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:  "ps",
		Usage: "list this machine's children, through the master's control socket (ADOPTED: taken over from a previous run; MEMORY, CPU, PIDS: use now / the need's limit, read from the child's cgroups, CPU over 0.25 s; TRACKING: the child's cgroup, or its process group)",
		Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			cfg, err := master.LoadConfig(c.String("config"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			list, err := ps(c.Context, cfg.RuntimeDirectory)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return printPS(c.App.Writer, list, time.Now())
		},
	}
}

// printPS writes the children as a table; UP is counted to now.
func printPS(w io.Writer, list []pipes.ChildInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSTATE\tPID\tPORTS\tREADY\tADOPTED\tUP\tMEMORY\tCPU\tPIDS\tLOG\tTRACKING")
	for _, ch := range list {
		var ports []string
		for _, p := range needs.Protocols {
			if n, ok := ch.Ports[p]; ok {
				ports = append(ports, fmt.Sprintf("%s:%d", p, n))
			}
		}
		tracking := ch.Tracking
		if tracking == "" {
			tracking = "-" // a master from before tracking was reported
		}
		mem, cpu, pids := usageColumns(ch)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ch.Instance, ch.State, ch.PID, strings.Join(ports, ","),
			strconv.FormatBool(ch.Ready), strconv.FormatBool(ch.Adopted), now.Sub(ch.StartedAt).Round(time.Second), mem, cpu, pids, ch.Log, tracking)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printUpstreams(w, list)
}

// printUpstreams lists the children's upstream listeners under the table,
// one line each, with the error of one that is not open or leads nowhere.
func printUpstreams(w io.Writer, list []pipes.ChildInfo) error {
	first := true
	for _, ch := range list {
		for _, u := range ch.Upstreams {
			if first {
				fmt.Fprintln(w)
				first = false
			}
			addr := u.Address
			if addr == "" {
				addr = "not open"
			}
			line := fmt.Sprintf("%s upstream %s (%s:%s): %s", ch.Instance, u.Name, u.Need, u.Protocol, addr)
			if u.Error != "" {
				line += ": " + u.Error
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return err
			}
		}
	}
	return nil
}

func ps(ctx context.Context, runtimeDir string) ([]pipes.ChildInfo, error) {
	list := []pipes.ChildInfo{}
	return list, control(ctx, runtimeDir, pipes.TypePS, &list)
}

// control sends request typ on the master's control socket and decodes
// the answer into out (left as it is for an empty answer).
func control(ctx context.Context, runtimeDir, typ string, out any) error {
	path, err := master.ControlSocket(runtimeDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pipes.Dial(ctx, path)
	if err != nil {
		if os.IsNotExist(err) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such file") {
			return fmt.Errorf("no master is running with runtime directory %s (socket %s)", runtimeDir, path)
		}
		return err
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	if err := conn.SendBody(typ, 1, nil); err != nil {
		return err
	}
	msg, err := conn.Recv()
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if msg.Error != nil {
		return msg.Error
	}
	if len(msg.Body) > 0 && string(msg.Body) != "null" {
		return msg.Decode(out)
	}
	return nil
}

// usageColumns formats a child's memory, CPU and pids as "use/limit"
// ("40.8M/256M", "0.20/0.5", "3/200"), the use alone without a limit, and
// "?" for a use its cgroups do not give ("-" with no limit either).
func usageColumns(ch pipes.ChildInfo) (mem, cpu, pids string) {
	var l needs.Limits
	if ch.Limits != nil {
		l = *ch.Limits
	}
	u := pipes.Usage{Memory: -1, CPUs: -1, PIDs: -1}
	if ch.Usage != nil {
		u = *ch.Usage
	}
	col := func(use string, known bool, limit string) string {
		switch {
		case !known && limit == "":
			return "-"
		case !known:
			use = "?"
		}
		if limit == "" {
			return use
		}
		return use + "/" + limit
	}
	var ml, cl, pl string
	if l.Memory != 0 {
		ml = l.Memory.String()
	}
	if l.CPUs != 0 {
		cl = strconv.FormatFloat(l.CPUs, 'g', -1, 64)
	}
	if l.PIDs != 0 {
		pl = strconv.Itoa(l.PIDs)
	}
	return col(strconv.FormatFloat(float64(u.Memory)/(1<<20), 'f', 1, 64)+"M", u.Memory >= 0, ml),
		col(strconv.FormatFloat(u.CPUs, 'f', 2, 64), u.CPUs >= 0, cl),
		col(strconv.FormatInt(u.PIDs, 10), u.PIDs >= 0, pl)
}
