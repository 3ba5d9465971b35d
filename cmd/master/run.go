package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
	"berth/master"
	"berth/version"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the master until SIGINT/SIGTERM; its children keep running for the next start to adopt",
		Description: "On SIGINT or SIGTERM the master exits and leaves its children running, with their ports\n" +
			"leased and their records in <runtimedirectory>/master.db: the next `master run` with the same\n" +
			"runtime directory re-adopts every child whose pid and start time still match, and reports the\n" +
			"others as exited. With --stop-children it stops them first instead (SIGTERM to each process\n" +
			"group, a grace, then SIGKILL) and releases their ports.",
		Flags: []cli.Flag{configFlag(),
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
			&cli.BoolFlag{Name: "stop-children", Usage: "on SIGINT/SIGTERM stop the children instead of leaving them to the next start"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"BERTH_TOKEN"}, Usage: "the lanmanager's token (overrides \"token\" in the config file)"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"BERTH_TOKEN_FILE"}, Usage: "read the lanmanager's token from this file"},
			&cli.StringFlag{Name: "announce-dir", EnvVars: []string{"BERTH_ANNOUNCE_DIR"}, Hidden: true,
				Usage: "where lanmanagers of this machine say where their tokens are"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true,
				Usage: "write a CPU profile of the whole run to this file at exit (bench/mesh -cpuprofile)"},
		},
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			path := c.String("config")
			cfg, created, err := master.LoadOrCreateConfig(path)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if created {
				fmt.Fprintf(c.App.ErrWriter, "master: %s did not exist; wrote it with the defaults (lanmanager %s, runtime directory %s)\n",
					path, cfg.LanManagerAddress, cfg.RuntimeDirectory)
			}
			if err := master.CheckTokenFile(path, cfg); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if err := resolveToken(c, &cfg); err != nil {
				return err
			}
			if path := c.String("cpuprofile"); path != "" {
				stop, err := startCPUProfile(path)
				if err != nil {
					return cli.Exit("--cpuprofile: "+err.Error(), 2)
				}
				defer stop()
			}
			lvl := slog.LevelInfo
			if c.Bool("verbose") {
				lvl = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			agent, err := master.Open(c.Context, master.Options{Config: cfg, Logger: log, Version: version.String(), Environ: os.Environ()})
			if err != nil {
				return err
			}
			<-c.Context.Done()
			if c.Bool("stop-children") {
				log.Info("stopping children and shutting down")
				return agent.Close()
			}
			log.Info("shutting down; children keep running")
			return agent.Leave()
		},
	}
}

// startCPUProfile profiles the process into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// resolveToken settles the master's token: --token or BERTH_TOKEN, else
// --token-file, else "token" in the config file, else the token of a
// lanmanager of this machine that announced itself on that address.
func resolveToken(c *cli.Context, cfg *master.Config) error {
	switch {
	case c.String("token") != "":
		cfg.Token = c.String("token")
	case c.String("token-file") != "":
		t, err := lan.ReadTokenFile(c.String("token-file"))
		if err != nil {
			return cli.Exit("--token-file: "+err.Error(), 2)
		}
		cfg.Token = t
	case cfg.Token == "":
		dir := cliapp.AnnounceDir(c.String("announce-dir"))
		if u, err := cfg.LinkURL(); err == nil {
			cfg.Token, _, _ = lan.FindToken(dir, u)
		}
	}
	return nil
}
