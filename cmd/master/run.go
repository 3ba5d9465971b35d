package main

import (
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"berth/master"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the master until SIGINT/SIGTERM, then stop its children",
		Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"}},
		Action: func(c *cli.Context) error {
			cfg, err := master.LoadConfig(c.String("config"))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			lvl := slog.LevelInfo
			if c.Bool("verbose") {
				lvl = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			agent, err := master.Open(c.Context, master.Options{Config: cfg, Logger: log})
			if err != nil {
				return err
			}
			<-c.Context.Done()
			log.Info("stopping children and shutting down")
			return agent.Close()
		},
	}
}
