package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
)

func serveCommand() *cli.Command {
	var cfg Config
	return &cli.Command{
		Name:  "serve",
		Usage: "run the lanmanager",
		Flags: append(cfg.flags(),
			&cli.StringFlag{Name: "data", Value: "lanmanager-data", Usage: "directory of the lanmanager's state (lan.db)", Destination: &cfg.DataDir},
		),
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			if err := cfg.resolve(c); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			log := cfg.logger()
			path, created, err := cfg.serverToken()
			if err != nil {
				return err
			}
			// The notices come before the API listens: whoever sees it
			// reachable has been told where its tokens are.
			if path != "" {
				fmt.Fprintln(c.App.ErrWriter, "lanmanager:", tokenNotice(path, created))
			}
			if cfg.InsecureNoToken {
				log.Warn("running without a token (--insecure-no-token): anyone who reaches this port, any local user included, can run commands on every master")
			}
			hub, ipcPath, err := cfg.openIPC(c.Context, log)
			if err != nil {
				return err
			}
			gw, gwPath, err := cfg.openGateway(c.Context, log)
			if err != nil {
				if hub != nil {
					hub.Close()
				}
				return err
			}
			if hub != nil {
				fmt.Fprintln(c.App.ErrWriter, "lanmanager:", ipcNotice(hub, ipcPath))
			}
			if gw != nil {
				fmt.Fprintln(c.App.ErrWriter, "lanmanager:", gatewayNotice(gw, gwPath))
			}
			srv, err := lan.Open(c.Context, cfg.lanConfig(log, hub, gw))
			if err != nil {
				if hub != nil {
					hub.Close()
				}
				if gw != nil {
					gw.Close()
				}
				return err
			}
			if hub != nil {
				defer hub.Close() // after the rest: its peers outlive the API
			}
			if gw != nil {
				defer gw.Close()
			}
			if remove, err := lan.Announce(announceDir(cfg.AnnounceDir), srv.Addr(), cfg.DataDir); err != nil {
				log.Warn("clients on this machine will not find the token by themselves", "err", err)
			} else {
				defer remove()
			}
			<-c.Context.Done()
			log.Info("shutting down")
			return srv.Close()
		},
	}
}
