package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
	"berth/master"
	"berth/version"
)

func devCommand() *cli.Command {
	var cfg Config
	var name string
	return &cli.Command{
		Name:  "dev",
		Usage: "run a lanmanager and one master in one process, state in a temp dir, loopback only",
		Flags: append(cfg.flags(),
			&cli.StringFlag{Name: "name", Value: "local", Usage: "name of the embedded master", Destination: &name},
		),
		Action: func(c *cli.Context) error {
			if err := cliapp.NoArgs(c); err != nil {
				return err
			}
			if err := cfg.resolve(c); err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if !isLoopback(cfg.Listen) {
				return cli.Exit(fmt.Sprintf("--listen %q: dev mode listens on loopback only", cfg.Listen), 2)
			}
			log := cfg.logger()
			cfg.anyPort = true
			dir, err := os.MkdirTemp("", "berth-dev-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cfg.DataDir = filepath.Join(dir, "lan")
			path, created, err := cfg.serverToken()
			if err != nil {
				return err
			}
			hub, ipcPath, err := cfg.openIPC(c.Context, log)
			if err != nil {
				return err
			}
			if hub != nil {
				defer hub.Close()
			}
			gw, gwPath, err := cfg.openGateway(c.Context, log)
			if err != nil {
				return err
			}
			if gw != nil {
				defer gw.Close()
			}
			srv, err := lan.Open(c.Context, cfg.lanConfig(log, hub, gw))
			if err != nil && !c.IsSet("listen") && errors.Is(err, syscall.EADDRINUSE) {
				// A machine that runs other things may hold the default
				// port: dev takes a free one and its hints say which.
				log.Warn("the API's default address is in use; it listens on a free port instead", "default", cfg.Listen)
				cfg.Listen = onFreePort(cfg.Listen)
				srv, err = lan.Open(c.Context, cfg.lanConfig(log, hub, gw))
			}
			if err != nil {
				return err
			}
			if remove, err := lan.Announce(announceDir(cfg.AnnounceDir), srv.Addr(), cfg.DataDir); err != nil {
				log.Warn("clients on this machine will not find the token by themselves", "err", err)
			} else {
				defer remove()
			}
			mcfg := master.DefaultConfig()
			mcfg.LanManagerAddress = srv.Addr()
			mcfg.RuntimeDirectory = filepath.Join(dir, "master")
			mcfg.Name = name
			mcfg.AdvertiseAddress = "127.0.0.1"
			mcfg.IngressAddress = "127.0.0.1" // the mesh's ingress ports, on this machine only
			mcfg.Token = cfg.Token
			agent, err := master.Open(c.Context, master.Options{Config: mcfg, Logger: log, StopGrace: cfg.StopGrace, Version: version.String(),
				Environ: os.Environ()})
			if err != nil {
				srv.Close()
				return err
			}
			// The embedded master's config, for `master ps --config`; it
			// goes with the state directory, never into the work tree.
			mconf := filepath.Join(dir, "masterconfig.json")
			if b, err := json.MarshalIndent(mcfg, "", "  "); err == nil {
				os.WriteFile(mconf, append(b, '\n'), 0o600)
			}
			w := c.App.ErrWriter
			fmt.Fprintf(w, "berth dev: lanmanager on http://%s, master %q, state in %s\n", srv.Addr(), name, dir)
			if path != "" {
				fmt.Fprintf(w, "berth dev: %s\n", tokenNotice(path, created))
			}
			if hub != nil {
				fmt.Fprintf(w, "berth dev: %s\n", ipcNotice(hub, ipcPath))
			}
			if gw != nil {
				fmt.Fprintf(w, "berth dev: %s\n", gatewayNotice(gw, gwPath))
			}
			addr := ""
			if srv.Addr() != lan.DefaultListen {
				addr = " --addr " + srv.Addr()
			}
			fmt.Fprintf(w, "try: go run ./cmd/lanmanager need add%s hello --instances 2 --protocols http -- go run ./examples/hello\n", addr)
			fmt.Fprintf(w, "     go run ./cmd/lanmanager service ls%s\n", addr)
			fmt.Fprintf(w, "     go run ./cmd/master ps --config %s\n", mconf)
			<-c.Context.Done()
			log.Info("stopping every child and shutting down")
			return errors.Join(agent.Close(), srv.Close())
		},
	}
}
