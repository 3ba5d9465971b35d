package cliapp

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// negative matches a negative number, which is an argument, not a flag
// (`need scale web -1` must say that -1 is no instance count, not that
// there is no flag -1).
var negative = regexp.MustCompile(`^-[0-9]`)

// UnknownFlagError marks an unknown flag among the arguments, so that a
// command can say more (need add: the command must follow --).
type UnknownFlagError struct{ msg string }

func (e *UnknownFlagError) Error() string { return e.msg }

// SplitArgs returns the positional arguments and, after "--", the command.
// urfave/cli v2 stops parsing flags at the first positional argument, so
// flags that follow one (`need add web --instances 3 -- cmd`) are parsed
// here into the same flag set, under every name of the flag (its aliases
// included: -n and --tail are one flag). On an error, pos holds the
// positional arguments met before it.
func SplitArgs(c *cli.Context) (pos, command []string, err error) {
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return pos, args[i+1:], nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" || negative.MatchString(a) {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := findFlag(c.Command.Flags, name)
		if f == nil {
			return pos, nil, &UnknownFlagError{UnknownFlag(c.Command.Flags, name)}
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return pos, nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			value = args[i]
		}
		// A scalar flag holds a value per name, so each is set; a
		// repeatable one shares one list among its names, so it is set
		// once, or a value would be added once per name.
		names := f.Names()
		if sf, ok := f.(cli.DocGenerationSliceFlag); ok && sf.IsSliceFlag() {
			names = names[:1]
		}
		for _, n := range names {
			if err := c.Set(n, value); err != nil {
				return pos, nil, fmt.Errorf("%s", BadValue(c.Command.Flags, name, value))
			}
		}
	}
	return pos, nil, nil
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// WantArgs checks the number of positional arguments.
func WantArgs(pos []string, names ...string) error {
	if len(pos) != len(names) {
		return Usage("want %d argument(s): %s; got %d", len(names), strings.Join(names, " "), len(pos))
	}
	return nil
}

// NoArgs is the first call of a command that takes no arguments: it parses
// the flags that follow a stray argument, so that none is dropped, and
// refuses the stray argument by name (usage error, exit 2). `serve extra
// --listen nonsense` used to start a server on the default address.
func NoArgs(c *cli.Context) error {
	pos, command, err := SplitArgs(c)
	if len(pos) > 0 || len(command) > 0 {
		return Usage("%s takes no arguments, got %s (flags start with -)", commandName(c), quoteList(append(pos, command...)))
	}
	if err != nil {
		return Usage("%s", err)
	}
	return nil
}

// Positional parses the arguments of a command that takes exactly the
// named positional arguments and no command.
func Positional(c *cli.Context, names ...string) ([]string, error) {
	pos, command, err := SplitArgs(c)
	if err != nil {
		return nil, Usage("%s", err)
	}
	if len(command) > 0 {
		return nil, Usage("%s takes no command after --", commandName(c))
	}
	return pos, WantArgs(pos, names...)
}

func quoteList(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	return strings.Join(q, " ")
}

// commandName is the command's path under the program, such as "need ls"
// (c.Command.FullName says only "ls").
func commandName(c *cli.Context) string {
	if c.App != nil && strings.HasPrefix(c.Command.HelpName, c.App.Name+" ") {
		return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
	}
	return c.Command.FullName()
}
