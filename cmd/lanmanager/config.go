package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/urfave/cli/v2"

	"berth/lan"
)

// Config is the lanmanager server's configuration, filled from flags.
type Config struct {
	Listen  string
	DataDir string
	Token   string
	Verbose bool
}

// Validate checks the listen address.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %v", c.Listen, err)
	}
	return nil
}

func (c *Config) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: lan.DefaultListen, Usage: "address of the HTTP API and WebSocket endpoints", Destination: &c.Listen},
		&cli.StringFlag{Name: "token", EnvVars: []string{"BERTH_TOKEN"}, Usage: "bearer token required on every call (masters included)", Destination: &c.Token},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging", Destination: &c.Verbose},
	}
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
