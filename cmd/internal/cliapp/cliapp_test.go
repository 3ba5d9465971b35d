package cliapp

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestClosest(t *testing.T) {
	cmds := []string{"serve", "dev", "need", "service", "master", "logs", "events", "completion"}
	for _, tt := range []struct{ in, want string }{
		{"ned", "need"}, {"srve", "serve"}, {"mastr", "master"}, {"evnts", "events"}, {"comp", "completion"},
		{"xyzzy", ""}, {"", ""},
	} {
		if got := Closest(tt.in, cmds); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDescribeFlagError(t *testing.T) {
	flags := []cli.Flag{
		&cli.IntFlag{Name: "instances"}, &cli.DurationFlag{Name: "timeout"}, &cli.BoolFlag{Name: "json"},
		&cli.Float64Flag{Name: "factor"}, &cli.IntFlag{Name: "tail", Aliases: []string{"n"}},
	}
	for _, tt := range []struct{ in, want string }{
		{`invalid value "abc" for flag -instances: parse error`, `--instances "abc": want a whole number`},
		{`invalid value "soon" for flag -timeout: parse error`, `--timeout "soon": want a duration such as 500ms, 10s or 1m`},
		{`invalid value "x" for flag -factor: parse error`, `--factor "x": want a number`},
		{`invalid value "x" for flag -n: parse error`, `-n "x": want a whole number`},
		{`flag provided but not defined: -jsno`, `unknown flag --jsno; did you mean --json?`},
		{`flag provided but not defined: -m`, `unknown flag -m`},
		{`flag needs an argument: -timeout`, `--timeout needs a value`},
		{`something else`, `something else`},
	} {
		if got := DescribeFlagError(flags, errors.New(tt.in)); got != tt.want {
			t.Errorf("DescribeFlagError(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHelpFirst(t *testing.T) {
	app := &cli.App{Name: "lanmanager", Commands: []*cli.Command{
		{Name: "need", Subcommands: []*cli.Command{{Name: "show"}, {Name: "add"}}},
	}}
	for _, tt := range []struct{ in, want string }{
		{"lanmanager need show web --help", "lanmanager need show --help"},
		{"lanmanager need show --help web", "lanmanager need show --help"},
		{"lanmanager need add web -h -- x", "lanmanager need add --help"},
		{"lanmanager need add web -- ls -h", "lanmanager need add web -- ls -h"},
		{"lanmanager need show web", "lanmanager need show web"},
		{"lanmanager --help", "lanmanager --help"},
	} {
		got := strings.Join(helpFirst(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("helpFirst(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if !slices.Equal(helpFirst(app, []string{"x"}), []string{"x"}) {
		t.Error("helpFirst of no arguments changed them")
	}
}

// TestSplitArgsAliases: a scalar flag given by its alias reads the same
// under either name; a repeatable flag with an alias keeps each value
// once, whichever name gave it (its names share one list).
func TestSplitArgsAliases(t *testing.T) {
	var pos, env []string
	var mode, modeAlias string
	app := &cli.App{Name: "x", Commands: []*cli.Command{{
		Name:            "run",
		SkipFlagParsing: true,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}},
			&cli.StringFlag{Name: "mode", Aliases: []string{"m"}},
		},
		Action: func(c *cli.Context) error {
			var err error
			pos, _, err = SplitArgs(c)
			env, mode, modeAlias = c.StringSlice("env"), c.String("mode"), c.String("m")
			return err
		},
	}}}
	if err := app.Run([]string{"x", "run", "web", "--env", "A=1", "-e", "B=2", "-m", "fast"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pos, []string{"web"}) || !slices.Equal(env, []string{"A=1", "B=2"}) || mode != "fast" || modeAlias != "fast" {
		t.Errorf("positional %q, env %q, mode %q (as m: %q); want [web], [A=1 B=2], fast, fast", pos, env, mode, modeAlias)
	}
}
