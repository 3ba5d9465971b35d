package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"berth/lan"
)

// Config is the lanmanager server's configuration, filled from flags.
type Config struct {
	Listen        string
	DataDir       string
	Token         string
	Verbose       bool
	StartDeadline time.Duration
	MasterGrace   time.Duration
	StopGrace     time.Duration
}

// Validate checks the listen address.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %v", c.Listen, err)
	}
	for name, d := range map[string]time.Duration{"--start-deadline": c.StartDeadline, "--master-grace": c.MasterGrace, "--stop-grace": c.StopGrace} {
		if d < 0 || d > 24*time.Hour {
			return fmt.Errorf("%s %s: must be between 0 and 24h", name, d)
		}
	}
	return nil
}

func (c *Config) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: lan.DefaultListen, Usage: "address of the HTTP API and WebSocket endpoints", Destination: &c.Listen},
		&cli.StringFlag{Name: "token", EnvVars: []string{"BERTH_TOKEN"}, Usage: "bearer token required on every call (masters included)", Destination: &c.Token},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging", Destination: &c.Verbose},
		&cli.DurationFlag{Name: "start-deadline", Value: 30 * time.Second, Usage: "how long a new child has for every declared port to answer", Destination: &c.StartDeadline},
		&cli.DurationFlag{Name: "master-grace", Value: 5 * time.Second, Usage: "how long a disconnected master's instances stay placed", Destination: &c.MasterGrace},
		&cli.DurationFlag{Name: "stop-grace", Value: 5 * time.Second, Usage: "time between SIGTERM and SIGKILL when stopping a child", Destination: &c.StopGrace},
	}
}

// lanConfig is the lan.Config for this configuration.
func (c *Config) lanConfig(log *slog.Logger) lan.Config {
	return lan.Config{Listen: c.Listen, DataDir: c.DataDir, Token: c.Token, Logger: log,
		StartDeadline: c.StartDeadline, MasterGrace: c.MasterGrace, StopGrace: c.StopGrace}
}

func (c *Config) logger() *slog.Logger {
	lvl := slog.LevelInfo
	if c.Verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// isLoopback reports whether a listen address stays on this machine.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
