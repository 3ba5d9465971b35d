package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
)

// negative matches a negative number, which is an argument, not a flag
// (`need scale web -1` must say that -1 is no instance count, not that
// there is no flag -1).
var negative = regexp.MustCompile(`^-[0-9]`)

// errUnknownFlag marks an unknown flag among the arguments, so that a
// command can say more (need add: the command must follow --).
type errUnknownFlag struct{ msg string }

func (e *errUnknownFlag) Error() string { return e.msg }

// splitArgs returns the positional arguments and, after "--", the command.
// urfave/cli v2 stops parsing flags at the first positional argument, so
// flags that follow one (`need add web --instances 3 -- cmd`) are parsed
// here into the same flag set, under every name of the flag (its aliases
// included: -n and --tail are one flag).
func splitArgs(c *cli.Context) (pos, command []string, err error) {
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
			return pos, nil, &errUnknownFlag{cliapp.UnknownFlag(c.Command.Flags, name)}
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			value = args[i]
		}
		for _, n := range f.Names() {
			if err := c.Set(n, value); err != nil {
				return nil, nil, fmt.Errorf("%s", cliapp.BadValue(c.Command.Flags, name, value))
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

// wantArgs checks the number of positional arguments.
func wantArgs(pos []string, names ...string) error {
	if len(pos) != len(names) {
		return cliapp.Usage("want %d argument(s): %s; got %d", len(names), strings.Join(names, " "), len(pos))
	}
	return nil
}

// noArgs parses trailing flags of a command that takes no arguments.
func noArgs(c *cli.Context) error {
	pos, command, err := splitArgs(c)
	if err != nil {
		return cliapp.Usage("%s", err)
	}
	if len(pos) > 0 || len(command) > 0 {
		return cliapp.Usage("%s takes no arguments, got %q", c.Command.FullName(), append(pos, command...))
	}
	return nil
}

// positional parses the arguments of a command that takes exactly the
// named positional arguments and no command.
func positional(c *cli.Context, names ...string) ([]string, error) {
	pos, command, err := splitArgs(c)
	if err != nil {
		return nil, cliapp.Usage("%s", err)
	}
	if len(command) > 0 {
		return nil, cliapp.Usage("%s takes no command after --", c.Command.FullName())
	}
	return pos, wantArgs(pos, names...)
}
