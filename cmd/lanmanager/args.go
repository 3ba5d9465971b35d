package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// splitArgs returns the positional arguments and, after "--", the command.
// urfave/cli v2 stops parsing flags at the first positional argument, so
// flags that follow one (`need add web --instances 3 -- cmd`) are parsed
// here into the same flag set.
func splitArgs(c *cli.Context) (pos, command []string, err error) {
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return pos, args[i+1:], nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := findFlag(c.Command.Flags, name)
		if f == nil {
			return nil, nil, fmt.Errorf("unknown flag %s", a)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("flag %s needs a value", a)
			}
			i++
			value = args[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, nil, fmt.Errorf("flag %s: %v", a, err)
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
		return cli.Exit(fmt.Sprintf("want %d argument(s): %s; got %d", len(names), strings.Join(names, " "), len(pos)), 2)
	}
	return nil
}

// noArgs parses trailing flags of a command that takes no arguments.
func noArgs(c *cli.Context) error {
	pos, command, err := splitArgs(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if len(pos) > 0 || len(command) > 0 {
		return cli.Exit(fmt.Sprintf("%s takes no arguments, got %q", c.Command.FullName(), append(pos, command...)), 2)
	}
	return nil
}

// positional parses the arguments of a command that takes exactly the
// named positional arguments and no command.
func positional(c *cli.Context, names ...string) ([]string, error) {
	pos, command, err := splitArgs(c)
	if err != nil {
		return nil, cli.Exit(err.Error(), 2)
	}
	if len(command) > 0 {
		return nil, cli.Exit(fmt.Sprintf("%s takes no command after --", c.Command.FullName()), 2)
	}
	return pos, wantArgs(pos, names...)
}
