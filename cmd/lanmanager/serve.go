package main

import (
	"github.com/urfave/cli/v2"

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
			if err := cfg.resolve(c); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			log := cfg.logger()
			if cfg.Token == "" && !isLoopback(cfg.Listen) {
				log.Warn("listening beyond loopback without a token: anyone who reaches this port can run commands on every master; set --token or BERTH_TOKEN")
			}
			srv, err := lan.Open(c.Context, cfg.lanConfig(log))
			if err != nil {
				return err
			}
			<-c.Context.Done()
			log.Info("shutting down")
			return srv.Close()
		},
	}
}
