// Package clitest holds what the two commands' tests share. Test only.
package clitest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
)

// EveryAlias checks, for every command of the app newApp makes, that a
// flag given by any of its names, before or after a positional argument,
// sets the one value the command reads (`logs web.0 -n 1` used to print
// every line). It returns how many cases it checked.
func EveryAlias(t *testing.T, newApp func() *cli.App) int {
	t.Helper()
	binary := newApp().Name
	checked := 0
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			p := append(append([]string{}, path...), cmd.Name)
			walk(p, cmd.Subcommands)
			if cmd.Action == nil {
				continue
			}
			for _, f := range cmd.Flags {
				names := f.Names()
				if len(names) < 2 {
					continue
				}
				value, want := "7", "7"
				flagArgs := func(alias string) []string { return []string{dashed(alias), value} }
				switch f.(type) {
				case *cli.BoolFlag:
					want = "true"
					flagArgs = func(alias string) []string { return []string{dashed(alias)} }
				case *cli.StringFlag:
					value, want = "seven", "seven"
				}
				for _, alias := range names {
					for _, after := range []bool{false, true} {
						checked++
						args := append([]string{binary}, p...)
						if after {
							args = append(append(args, "X"), flagArgs(alias)...)
						} else {
							args = append(append(args, flagArgs(alias)...), "X")
						}
						if got := readFlag(t, newApp(), p, names[0], args); got != want {
							t.Errorf("%s: %s read %q, want %q", strings.Join(args, " "), names[0], got, want)
						}
					}
				}
			}
		}
	}
	walk(nil, newApp().Commands)
	return checked
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// readFlag runs the command of app at path with args, its action replaced
// by one that parses the arguments as the real commands do
// (cliapp.SplitArgs) and reads flag.
func readFlag(t *testing.T, app *cli.App, path []string, flag string, args []string) string {
	t.Helper()
	cmds := app.Commands
	var cmd *cli.Command
	for _, name := range path {
		for _, c := range cmds {
			if c.Name == name {
				cmd = c
			}
		}
		cmds = cmd.Subcommands
	}
	var got string
	cmd.Action = func(c *cli.Context) error {
		if _, _, err := cliapp.SplitArgs(c); err != nil {
			return err
		}
		got = fmt.Sprint(c.Value(flag))
		return nil
	}
	cmd.Before = nil
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	if err := app.RunContext(context.Background(), args); err != nil {
		t.Errorf("%s: %v %s", strings.Join(args, " "), err, out.String())
	}
	return got
}
