package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
)

func ipcCommand() *cli.Command {
	return &cli.Command{
		Name:        "ipc",
		Usage:       "the IPC hub: see its peers, or run one alone",
		Subcommands: []*cli.Command{ipcLsCommand(), ipcServeCommand()},
	}
}

func ipcLsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list the IPC hub's groups and peers, and its counters",
		Flags: append(clientFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			st, err := cl.IPC(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "hub %s: %d messages, %d bytes, %d dropped, %d slow consumers disconnected, %d oversize frames\n\n",
				st.Listen, st.Counters.Messages, st.Counters.Bytes, st.Counters.Drops, st.Counters.SlowDisconnects, st.Counters.Oversize)
			var rows [][]string
			for _, g := range st.Groups {
				for _, p := range g.Peers {
					rows = append(rows, []string{g.Name, p.ID, orDash(p.Instance), p.Remote, ago(p.Since)})
				}
			}
			table(w, "GROUP\tPEER\tINSTANCE\tREMOTE\tSINCE", rows)
			return nil
		},
	}
}

func ipcServeCommand() *cli.Command {
	var listen, token string
	var allowed cli.StringSlice
	return &cli.Command{
		Name:  "serve",
		Usage: "run an IPC hub alone (acebase-ipc-server protocol), without the lanmanager",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:" + strconv.Itoa(lan.DefaultIPCPort), Usage: "address of the hub", Destination: &listen},
			&cli.StringFlag{Name: "token", Usage: "token every client must send (t=); without one, any client is admitted", Destination: &token},
			&cli.StringSliceFlag{Name: "allowed-host", Usage: "a name clients may use for this hub (Host header) besides localhost, its IP addresses, its listen host and the machine's host name; repeatable", Destination: &allowed},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
		},
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			if _, _, err := net.SplitHostPort(listen); err != nil {
				return cli.Exit(fmt.Sprintf("--listen %q: %v", listen, err), 2)
			}
			if token != "" {
				if err := lan.ValidateIPCToken(token); err != nil {
					return cli.Exit("--token: "+err.Error(), 2)
				}
			}
			cfg := Config{Listen: listen, Verbose: c.Bool("verbose")}
			log := cfg.logger()
			if token == "" {
				log.Warn("IPC hub without a token (--token): anyone who reaches this port can join any group and read its messages")
			}
			hub, err := lan.OpenIPC(c.Context, lan.IPCConfig{Listen: listen, Token: token, AllowedHosts: allowed.Value(), Logger: log})
			if err != nil {
				return cli.Exit(fmt.Sprintf("--listen %s: %v", listen, err), 1)
			}
			<-c.Context.Done()
			log.Info("shutting down")
			return hub.Close()
		},
	}
}
