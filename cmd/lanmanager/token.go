package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
)

// announceFlag is where lanmanagers of this user say where their data
// directories are, so that clients on this machine find the token.
func announceFlag(dest *string) cli.Flag {
	return &cli.StringFlag{Name: "announce-dir", EnvVars: []string{"BERTH_ANNOUNCE_DIR"}, Hidden: true, Destination: dest,
		Usage: "directory where lanmanagers say where their tokens are (default $XDG_RUNTIME_DIR/berth, else the user's cache directory)"}
}

// announceDir is cliapp.AnnounceDir.
func announceDir(flag string) string { return cliapp.AnnounceDir(flag) }

// serverToken settles the token of serve and dev: --token or BERTH_TOKEN;
// none with --insecure-no-token; else the one kept in the data directory,
// created on first start.
func (c *Config) serverToken() (path string, created bool, err error) {
	switch {
	case c.InsecureNoToken && c.Token != "":
		return "", false, cli.Exit("--insecure-no-token and --token (or BERTH_TOKEN) contradict each other: give one", 2)
	case c.InsecureNoToken, c.Token != "":
		return "", false, nil
	}
	c.Token, path, created, err = lan.LoadOrCreateToken(c.DataDir)
	return path, created, err
}

// tokenNotice is what serve and dev print about the token.
func tokenNotice(path string, created bool) string {
	verb := "kept"
	if created {
		verb = "created"
	}
	return fmt.Sprintf("API token %s in %s: clients of this user on this machine find it by themselves; "+
		"elsewhere pass it as --token, BERTH_TOKEN or --token-file, and to masters as \"token\" in masterconfig.json", verb, path)
}

// clientToken is the token a client command sends: --token or BERTH_TOKEN,
// else --token-file, else the one of a lanmanager of this machine that
// announced itself on that address, else none.
func clientToken(c *cli.Context) (string, error) {
	if t := c.String("token"); t != "" {
		return t, nil
	}
	if f := c.String("token-file"); f != "" {
		t, err := lan.ReadTokenFile(f)
		if err != nil {
			return "", cli.Exit("--token-file: "+err.Error(), 2)
		}
		return t, nil
	}
	t, _, _ := lan.FindToken(announceDir(c.String("announce-dir")), c.String("addr"))
	return t, nil
}
