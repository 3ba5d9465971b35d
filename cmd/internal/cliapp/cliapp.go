// Package cliapp holds what berth's two commands, lanmanager and master,
// do alike on the command line: one table of exit codes, --help in every
// position, flag errors that name the flag and its value, suggestions for
// mistyped commands and flags, and shell completion.
//
// # Exit codes
//
//	0  success (help and --version included)
//	1  an error while running: the lanmanager unreachable or refusing the
//	   call (401, 403, 404, 409, 5xx), a failed start, a --wait that timed out
//	2  a usage or validation error: an unknown command or flag, a missing or
//	   extra argument, a malformed value, or a declaration the lanmanager
//	   refused as invalid (400)
package cliapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"berth/lan"
)

// Exit codes; see the package doc.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// The version flag has no -v: serve, dev and run use -v for --verbose.
// Set once, before any app runs: urfave/cli's flags are globals, so two
// apps must not run at once in one process (tests included).
func init() { cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"} }

// Usage is a usage error (exit code 2).
func Usage(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), ExitUsage)
}

// Run runs app with args after installing the shared behaviour on every
// command: usage errors become exit code 2 with a message that names the
// flag, --help/-h anywhere before "--" prints the command's help (see
// helpFirst), and an unknown command is an error that suggests the closest
// one.
func Run(ctx context.Context, app *cli.App, args []string) error {
	var notFound error
	app.OnUsageError = usageError
	app.CommandNotFound = func(c *cli.Context, name string) {
		notFound = unknownCommand(c, name)
	}
	for _, cmd := range app.Commands {
		install(cmd)
	}
	err := app.RunContext(ctx, helpFirst(app, args))
	if err == nil {
		err = notFound
	}
	return err
}

func install(cmd *cli.Command) {
	cmd.OnUsageError = usageError
	for _, sub := range cmd.Subcommands {
		install(sub)
	}
}

// helpFirst rewrites a command line that asks for help anywhere before
// "--" into `PROG COMMAND... --help`. urfave/cli stops parsing flags at
// the first positional argument, so `need show web --help` ran the command,
// and its own --help takes the first argument for a subcommand to explain
// (`need show --help web`: no command web).
func helpFirst(app *cli.App, args []string) []string {
	asked := false
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if a == "--help" || a == "-h" || a == "-help" {
			asked = true
			break
		}
	}
	if !asked {
		return args
	}
	out := []string{args[0]}
	cmds := app.Commands
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") {
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		cmds = next.Subcommands
	}
	return append(out, "--help")
}

func usageError(c *cli.Context, err error, _ bool) error {
	var flags []cli.Flag
	if c.Command != nil {
		flags = c.Command.Flags
	}
	if len(flags) == 0 && c.App != nil {
		flags = c.App.Flags
	}
	return cli.Exit(DescribeFlagError(flags, err), ExitUsage)
}

func unknownCommand(c *cli.Context, name string) error {
	var names []string
	subs := c.Command.Subcommands
	if c.Command.Name == "" && c.App != nil {
		subs = c.App.Commands
	}
	for _, s := range subs {
		if !s.Hidden && s.Name != "help" {
			names = append(names, s.Names()...)
		}
	}
	where := c.App.Name
	if c.Command.Name != "" {
		where = c.Command.HelpName
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := Closest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return Usage("%s (see %s --help)", msg, where)
}

// DescribeFlagError rewrites the flag package's errors so that they name
// the flag the way it is typed and the value that was wrong, and suggests
// the closest flag for an unknown one.
func DescribeFlagError(flags []cli.Flag, err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: "):
		name := strings.TrimLeft(strings.TrimPrefix(msg, "flag provided but not defined: "), "-")
		return UnknownFlag(flags, name)
	case strings.HasPrefix(msg, "flag needs an argument: "):
		name := strings.TrimLeft(strings.TrimPrefix(msg, "flag needs an argument: "), "-")
		return fmt.Sprintf("%s needs a value", dashed(name))
	case strings.HasPrefix(msg, "invalid value "):
		// invalid value "abc" for flag -instances: parse error
		rest := strings.TrimPrefix(msg, "invalid value ")
		value, rest, ok := strings.Cut(rest, " for flag ")
		if !ok {
			break
		}
		name, _, _ := strings.Cut(rest, ":")
		return BadValue(flags, strings.TrimLeft(name, "-"), strings.Trim(value, `"`))
	}
	return msg
}

// UnknownFlag says that --name is no flag of these, suggesting the closest.
func UnknownFlag(flags []cli.Flag, name string) string {
	msg := fmt.Sprintf("unknown flag %s", dashed(name))
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	if s := Closest(name, names); s != "" && len(name) > 2 && len(s) > 2 {
		msg += fmt.Sprintf("; did you mean %s?", dashed(s))
	}
	return msg
}

// BadValue says what --name wanted and that value is not it.
func BadValue(flags []cli.Flag, name, value string) string {
	want := "a valid value"
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			switch f.(type) {
			case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
				want = "a whole number"
			case *cli.Float64Flag:
				want = "a number"
			case *cli.DurationFlag:
				want = "a duration such as 500ms, 10s or 1m"
			case *cli.BoolFlag:
				want = "true or false"
			}
		}
	}
	return fmt.Sprintf("%s %q: want %s", dashed(name), value, want)
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// Closest returns the candidate nearest to s (at most two edits away, or
// one that s is a prefix of), or "".
func Closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := distance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" && len(s) >= 2 {
		for _, c := range candidates {
			if strings.HasPrefix(c, s) {
				return c
			}
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ExitCode prints err (if any) to w, prefixed with prog, and returns the
// exit code it stands for.
func ExitCode(err error, w io.Writer, prog string) int {
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ec cli.ExitCoder
	var ae *lan.APIError
	switch {
	case errors.As(err, &ec):
		code = ec.ExitCode()
	case errors.As(err, &ae) && ae.Status == http.StatusBadRequest:
		code = ExitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(w, prog+":", msg)
	}
	return code
}
