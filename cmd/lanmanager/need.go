package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
	"berth/needs"
)

func needCommand() *cli.Command {
	return &cli.Command{
		Name:  "need",
		Usage: "declare and inspect needs",
		Subcommands: []*cli.Command{
			needAddCommand(), needLsCommand(), needShowCommand(), needScaleCommand(), needRestartCommand(), needRebalanceCommand(), needRmCommand(),
		},
	}
}

func needAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "declare a need",
		ArgsUsage: "NAME -- COMMAND [ARG...]",
		Flags: append(append(clientFlags(),
			&cli.IntFlag{Name: "instances", Value: 1, Usage: "number of instances"},
			&cli.StringFlag{Name: "protocols", Usage: "ports each instance gets: tcp,http,ws"},
			&cli.StringSliceFlag{Name: "env", Usage: "extra environment K=V (repeatable)"},
			&cli.StringFlag{Name: "machine", Usage: "pin to the master of this name"},
			&cli.IntFlag{Name: "restart-local", Usage: "consecutive failures retried on the same master before another is preferred (default 0)"},
			&cli.StringFlag{Name: "restart-delay", Usage: "first back-off delay after a failure (default 100ms)"},
			&cli.StringFlag{Name: "restart-max-delay", Usage: "cap of the back-off delay (default 30s)"},
			&cli.StringFlag{Name: "restart-factor", Usage: "growth of the delay per failure, 1 to 10 (default 2)"},
			&cli.StringFlag{Name: "restart-reset-after", Usage: "uptime after which the failure count starts over (default 30s)"},
			&cli.BoolFlag{Name: "socket-activation", Usage: "the master binds the ports and passes them to the child (LISTEN_FDS)"},
			&cli.StringSliceFlag{Name: "ingress", Usage: "PROTOCOL=PORT: every master opens PORT on its ingress address and balances each connection over the running instances (repeatable)"},
			&cli.StringSliceFlag{Name: "upstream", Usage: "NAME=NEED:PROTOCOL: the child gets BERTH_UPSTREAM_<NAME>=127.0.0.1:PORT, tunnelled to a running instance of NEED (repeatable)"},
			&cli.BoolFlag{Name: "peers", Usage: "the child gets BERTH_PEERS_FILE, its need's running instances, kept up to date, and change messages on its pipe"},
			&cli.StringFlag{Name: "peers-signal", Usage: "with --peers, also send the child this signal on each change: HUP, USR1 or USR2"},
			&cli.BoolFlag{Name: "gateway", Usage: "publish the need on the WebSocket gateway at ws://GATEWAY/NAME (needs an http port)"},
			&cli.StringFlag{Name: "balance", Usage: "how ingress, and the upstreams that lead to this need, pick an instance: round-robin, least-conn, resource or hash (default round-robin)"},
			&cli.StringFlag{Name: "balance-weights", Usage: "with --balance resource, the score's weights: conns=10,cpu=2,heap=100 (the defaults; give any of them)"},
			&cli.StringFlag{Name: "ipc-group", Usage: "IPC hub group of the children, BERTH_IPC_GROUP (default: the need's name); needs that name one group share it"},
			&cli.StringFlag{Name: "driver", Usage: "the driver that runs the children: exec (built in, the default) or an external driver of the masters' plugins directory"},
			&cli.StringSliceFlag{Name: "driver-opt", Usage: "KEY=VALUE option passed to the driver (repeatable)"},
			&cli.StringFlag{Name: "memory", Usage: "most memory each child may use, e.g. 256M or 1G (K, M, G: powers of 1024); past it the child is OOM-killed"},
			&cli.StringFlag{Name: "cpus", Usage: "CPU time each child may use, in CPUs, e.g. 0.5"},
			&cli.IntFlag{Name: "pids", Usage: "most processes and threads each child may have at once"},
			jsonFlag(),
		), waitFlags()...),
		Action: func(c *cli.Context) error {
			pos, command, err := cliapp.SplitArgs(c)
			var unknown *cliapp.UnknownFlagError
			switch {
			case errors.As(err, &unknown) && len(pos) > 1:
				return cliapp.Usage("%s: the command must follow --, as in: need add %s [flags] -- %s ...", err, pos[0], strings.Join(pos[1:], " "))
			case err != nil:
				return cliapp.Usage("%s", err)
			case len(pos) > 1 && len(command) == 0:
				return cliapp.Usage("need add takes one NAME, got %q: the command must follow --, as in: need add %s [flags] -- %s", pos, pos[0], strings.Join(pos[1:], " "))
			}
			if err := cliapp.WantArgs(pos, "NAME"); err != nil {
				return err
			}
			if len(command) == 0 {
				return cliapp.Usage("command: missing; put it after --, e.g. need add web -- ./server --port '${PORT}'")
			}
			protos, err := needs.ParseProtocols(c.String("protocols"))
			if err != nil {
				return cli.Exit("--protocols: "+err.Error(), 2)
			}
			env, err := needs.ParseEnv(c.StringSlice("env"))
			if err != nil {
				return cli.Exit("--env: "+err.Error(), 2)
			}
			ingress, err := needs.ParseIngress(c.StringSlice("ingress"))
			if err != nil {
				return cli.Exit("--ingress: "+err.Error(), 2)
			}
			upstreams, err := needs.ParseUpstreams(c.StringSlice("upstream"))
			if err != nil {
				return cli.Exit("--upstream: "+err.Error(), 2)
			}
			policy, err := restartPolicy(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if c.Bool("socket-activation") && len(protos) == 0 {
				return cli.Exit("--socket-activation: needs at least one port; give --protocols", 2)
			}
			limits, err := limitFlags(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if err := checkWaitFlags(c); err != nil {
				return err
			}
			n := c.Int("instances")
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			st, err := cl.AddNeed(c.Context, lan.NeedSpec{Name: pos[0], Command: command, Instances: &n,
				Protocols: protos, Env: env, Machine: c.String("machine"), Restart: policy, SocketActivation: c.Bool("socket-activation"),
				IPCGroup: c.String("ipc-group"), Ingress: ingress, Balance: c.String("balance"), BalanceWeights: c.String("balance-weights"),
				Upstreams: upstreams, Peers: c.Bool("peers"), PeersSignal: c.String("peers-signal"), Gateway: c.Bool("gateway"),
				Driver: c.String("driver"), DriverOpts: c.StringSlice("driver-opt"), Limits: limits})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, st); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(c.App.Writer, "need %s added: %d instance(s) of %s\n", st.Name, st.Instances, shellQuote(st.Command))
			}
			if c.Bool("wait") {
				return waitRunning(c, cl, st.Name)
			}
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
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			list, err := cl.Needs(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printList(c.App.Writer, list)
			}
			var rows [][]string
			for _, n := range list {
				rows = append(rows, []string{n.Name, strconv.Itoa(n.Instances), strconv.Itoa(n.Running), strconv.Itoa(n.Pending),
					formatProtocols(n.Protocols), orDash(n.Machine), shellQuote(n.Command)})
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
			pos, err := cliapp.Positional(c, "NAME")
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			st, err := cl.Need(c.Context, pos[0])
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "name:       %s\ncommand:    %s\ninstances:  %d (%d running, %d pending)\nprotocols:  %s\n",
				st.Name, shellQuote(st.Command), st.Instances, st.Running, st.Pending, formatProtocols(st.Protocols))
			if st.Machine != "" {
				fmt.Fprintf(w, "machine:    %s\n", st.Machine)
			}
			fmt.Fprintf(w, "restart:    %s\n", describePolicy(st.Restart))
			if st.IPCGroup != "" {
				fmt.Fprintf(w, "ipc group:  %s\n", st.IPCGroup)
			}
			if st.Gateway {
				fmt.Fprintf(w, "gateway:    ws://GATEWAY/%s; instances get BERTH_GATEWAY_TOKEN\n", st.Name)
			}
			for _, u := range st.Upstreams {
				note := ""
				switch t, err := cl.Need(c.Context, u.Need); {
				case errors.Is(err, needs.ErrNotFound):
					note = " (no such need yet: its connections are accepted and closed)"
				case err == nil && t.Running == 0:
					note = " (no running instance: its connections are accepted and closed)"
				case err == nil && !t.HasProtocol(u.Protocol):
					note = fmt.Sprintf(" (%s declares no %s port: its connections are accepted and closed)", u.Need, u.Protocol)
				}
				fmt.Fprintf(w, "upstream:   %s → %s:%s, in %s%s\n", u.Name, u.Need, u.Protocol, u.EnvName(), note)
			}
			if st.Peers {
				sig := ""
				if st.PeersSignal != "" {
					sig = ", and SIG" + st.PeersSignal + " on each change"
				}
				fmt.Fprintf(w, "peers:      BERTH_PEERS_FILE and change messages on the pipe%s\n", sig)
			}
			if len(st.Ingress) == 0 && st.Balance != "" {
				weights := ""
				if st.BalanceWeights != "" {
					weights = ", weights " + st.BalanceWeights
				}
				fmt.Fprintf(w, "balance:    %s%s (the upstreams that lead to it)\n", st.Balance, weights)
			}
			if len(st.Ingress) > 0 {
				var ports []string
				for _, in := range st.Ingress {
					ports = append(ports, in.String())
				}
				weights := ""
				if st.BalanceWeights != "" {
					weights = ", weights " + st.BalanceWeights
				}
				fmt.Fprintf(w, "ingress:    %s on every master (balance %s%s)\n", strings.Join(ports, ", "), st.BalanceOrDefault(), weights)
				if ms, err := cl.Masters(c.Context); err == nil {
					for _, m := range ms {
						for _, p := range m.Ingress {
							if p.Need == st.Name {
								fmt.Fprintf(w, "ingress:    %s:%d on %s: %s\n", p.Protocol, p.Port, m.Name, ingressState(p))
							}
						}
					}
				}
			}
			if st.Driver != "" {
				fmt.Fprintf(w, "driver:     %s\n", st.Driver)
			}
			for _, o := range st.DriverOpts {
				fmt.Fprintf(w, "driver opt: %s\n", o)
			}
			if l := st.Limit(); !l.IsZero() {
				fmt.Fprintf(w, "limits:     %s (per child)\n", l)
			}
			if st.SocketActivation {
				fmt.Fprintf(w, "sockets:    activated (the master binds the ports and passes them as LISTEN_FDS)\n")
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
					if d := time.Until(in.NextAttempt); d > 0 {
						next = "in " + d.Round(time.Millisecond).String()
					} else {
						next = "due"
					}
				}
				master := orDash(in.Master)
				if in.Handoff != nil {
					master += "→" + in.Handoff.Master // a replacement starts there
				}
				rows = append(rows, []string{in.Name, string(in.State), master, pidString(in.PID), formatPorts(in.Ports),
					strconv.Itoa(in.Restarts), strconv.Itoa(in.Failures), orDash(in.LastExit), next, orDash(in.Reason)})
			}
			table(w, "INSTANCE\tSTATE\tMASTER\tPID\tPORTS\tRESTARTS\tFAILURES\tLAST EXIT\tNEXT ATTEMPT\tREASON", rows)
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
		Flags:     append(append(clientFlags(), jsonFlag()), waitFlags()...),
		Action: func(c *cli.Context) error {
			pos, err := cliapp.Positional(c, "NAME", "N")
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(pos[1])
			if err != nil {
				return cliapp.Usage("N: %q is not a whole number", pos[1])
			}
			if n < 0 {
				return cliapp.Usage("N: %d: an instance count must be 0 or more", n)
			}
			if err := checkWaitFlags(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			st, err := cl.Scale(c.Context, pos[0], n)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, st); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(c.App.Writer, "need %s scaled to %d\n", st.Name, st.Instances)
			}
			if c.Bool("wait") {
				return waitRunning(c, cl, st.Name)
			}
			return nil
		},
	}
}

func needRestartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "retry the need's backed-off instances now, their failure count reset",
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
			before, err := cl.Need(c.Context, pos[0])
			if err != nil {
				return err
			}
			st, err := cl.RestartNeed(c.Context, pos[0])
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			var retried []string
			for _, in := range before.InstanceList {
				if in.State == needs.Backoff && !in.Removing {
					retried = append(retried, in.Name)
				}
			}
			if len(retried) == 0 {
				fmt.Fprintf(c.App.Writer, "need %s: no instance was backing off (%d running, %d pending)\n", st.Name, st.Running, st.Pending)
				return nil
			}
			fmt.Fprintf(c.App.Writer, "need %s: retrying %s now (%d running, %d pending)\n", st.Name, strings.Join(retried, ", "), st.Running, st.Pending)
			return nil
		},
	}
}

// restartFlags maps the restart policy's fields to the flags that set them.
var restartFlags = map[string]string{
	"restart.local_attempts": "--restart-local",
	"restart.delay":          "--restart-delay",
	"restart.max_delay":      "--restart-max-delay",
	"restart.factor":         "--restart-factor",
	"restart.reset_after":    "--restart-reset-after",
}

// restartPolicy builds the restart policy from the --restart-* flags; nil
// when none is given. Errors name the flag.
func restartPolicy(c *cli.Context) (*needs.RestartPolicy, error) {
	set := false
	for _, f := range restartFlags {
		set = set || c.IsSet(strings.TrimPrefix(f, "--"))
	}
	if !set {
		return nil, nil
	}
	p := &needs.RestartPolicy{LocalAttempts: c.Int("restart-local")}
	for flag, dst := range map[string]*needs.Duration{"restart-delay": &p.Delay, "restart-max-delay": &p.MaxDelay, "restart-reset-after": &p.ResetAfter} {
		if v := c.String(flag); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, fmt.Errorf("--%s %q: not a duration such as 500ms, 10s or 1m", flag, v)
			}
			*dst = needs.Duration(d)
		}
	}
	if v := c.String("restart-factor"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("--restart-factor %q: not a number", v)
		}
		p.Factor = f
	}
	if err := p.Validate(); err != nil {
		var fe *needs.FieldError
		if errors.As(err, &fe) && restartFlags[fe.Field] != "" {
			return nil, fmt.Errorf("%s: %s", restartFlags[fe.Field], fe.Msg)
		}
		return nil, err
	}
	return p, nil
}

// describePolicy says in one line how a need's instances are restarted.
func describePolicy(p *needs.RestartPolicy) string {
	e := p.Effective()
	s := fmt.Sprintf("back-off %s ×%g up to %s, failure count reset after %s up", time.Duration(e.Delay), e.Factor,
		time.Duration(e.MaxDelay), time.Duration(e.ResetAfter))
	switch e.LocalAttempts {
	case 0:
		s += "; a failed instance moves to another master when one can take it"
	case 1:
		s += "; 1 failure in a row is retried on the same master, then another is preferred"
	default:
		s += fmt.Sprintf("; %d failures in a row are retried on the same master, then another is preferred", e.LocalAttempts)
	}
	if p == nil {
		s += " (defaults)"
	}
	return s
}

func needRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a need and stop its instances",
		ArgsUsage: "NAME",
		Flags:     clientFlags(),
		Action: func(c *cli.Context) error {
			pos, err := cliapp.Positional(c, "NAME")
			if err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveNeed(c.Context, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "need %s removed; its instances are stopping\n", pos[0])
			return nil
		},
	}
}
