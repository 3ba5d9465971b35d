package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
)

func runCode(ctx context.Context, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := runApp(ctx, append([]string{"master"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestPSWritesNoConfig: `master ps` with no config file says so (exit 2)
// and writes none; it used to write the defaults silently.
func TestPSWritesNoConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masterconfig.json")
	_, errOut, code := runCode(t.Context(), "ps", "--config", path)
	if code != 2 || !strings.Contains(errOut, path) || !strings.Contains(errOut, "master run writes one") {
		t.Errorf("master ps without a config: exit %d %q; want exit 2 naming the file", code, errOut)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("master ps wrote a config file")
	}
}

// TestRunSaysItWroteDefaults: `master run` writes the defaults when the
// config is missing, and says so.
func TestRunSaysItWroteDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masterconfig.json")
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // stop at once: only the start matters here
	t.Setenv("BERTH_ANNOUNCE_DIR", t.TempDir())
	_, errOut, _ := runCode(ctx, "run", "--config", path, "--stop-children")
	if !strings.Contains(errOut, path+" did not exist; wrote it with the defaults") {
		t.Errorf("master run: %q; want it to say it wrote the defaults", errOut)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("config not written: %v", err)
	}
}

// TestMasterExitCodes: the table shared with lanmanager.
func TestMasterExitCodes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "master version"},
		{[]string{"rnu"}, 2, `did you mean "run"?`},
		{[]string{"ps", "--jsno"}, 2, "did you mean --json?"},
		{[]string{"run", "--help"}, 0, "USAGE"},
		{[]string{"completion", "bash"}, 0, "complete -o bashdefault"},
		{[]string{"completion", "bash", "--nope"}, 2, "unknown flag --nope"},
		{[]string{"completion", "bash", "zsh"}, 2, `want one shell, bash, zsh or fish; got "bash" "zsh"`},
	} {
		out, errOut, code := runCode(t.Context(), tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("master %s: exit %d, want %d; output %q, want %q", strings.Join(tt.args, " "), code, tt.code, out+errOut, tt.want)
		}
	}
}

// TestStrayArgument: run, ps and drivers take no arguments; a stray one is
// refused by name, exit 2, before anything is read or written. urfave/cli
// stops parsing flags at the first argument: `master run extra --config
// bad.json` used to write masterconfig.json into the working directory.
// Should the command run, the --config before the stray argument keeps it
// in a temp dir, and the cancelled context stops it at once.
func TestStrayArgument(t *testing.T) {
	t.Setenv("BERTH_ANNOUNCE_DIR", t.TempDir())
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	checked := 0
	for _, cmd := range newApp().Commands {
		if cmd.Action == nil || cmd.ArgsUsage != "" || cmd.Name == "help" {
			continue
		}
		checked++
		path := filepath.Join(t.TempDir(), "masterconfig.json")
		args := []string{cmd.Name, "--config", path, "extra", "--config", "bad.json"}
		_, errOut, code := runCode(ctx, args...)
		if code != 2 || !strings.Contains(errOut, `takes no arguments, got "extra"`) {
			t.Errorf("master %s: exit %d, %q; want exit 2 naming the stray argument", strings.Join(args, " "), code, errOut)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("master %s wrote %s", strings.Join(args, " "), path)
		}
	}
	if checked != 3 {
		t.Errorf("%d commands without arguments, want 3 (run, ps, drivers)", checked)
	}
	if entries, _ := os.ReadDir("."); len(entries) != 0 {
		t.Errorf("a refused command wrote into the working directory: %v", entries)
	}
}

// TestEveryAlias: a flag given by any of its names (`master run -v` and
// `--verbose`), before or after an argument, sets the one value the command
// reads. lanmanager's TestEveryAlias does the same for its commands.
func TestEveryAlias(t *testing.T) {
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
						args := append([]string{"master"}, p...)
						if after {
							args = append(append(args, "X"), flagArgs(alias)...)
						} else {
							args = append(append(args, flagArgs(alias)...), "X")
						}
						if got := readFlag(t, p, names[0], args); got != want {
							t.Errorf("%s: %s read %q, want %q", strings.Join(args, " "), names[0], got, want)
						}
					}
				}
			}
		}
	}
	walk(nil, newApp().Commands)
	if checked < 4 { // run -v and --verbose, before and after
		t.Fatalf("%d alias cases checked, want at least master run -v/--verbose", checked)
	}
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// readFlag runs the command at path with args, its action replaced by one
// that parses the arguments as the real commands do (cliapp.SplitArgs)
// and reads flag.
func readFlag(t *testing.T, path []string, flag string, args []string) string {
	t.Helper()
	app := newApp()
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
