package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/urfave/cli/v2"

	"berth/needs"
)

// limitFlag maps the fields of needs.Limits to the flags that set them.
var limitFlag = map[string]string{
	"limits.memory": "--memory",
	"limits.cpus":   "--cpus",
	"limits.pids":   "--pids",
}

// limitFlags builds a need's limits from --memory, --cpus and --pids; nil
// when none is given. Errors name the flag.
func limitFlags(c *cli.Context) (*needs.Limits, error) {
	if !c.IsSet("memory") && !c.IsSet("cpus") && !c.IsSet("pids") {
		return nil, nil
	}
	var l needs.Limits
	if c.IsSet("memory") {
		m, err := needs.ParseByteSize(c.String("memory"))
		if err != nil {
			return nil, fmt.Errorf("--memory: %w", err)
		}
		if m == 0 {
			return nil, errors.New("--memory: must be at least 1M, got 0")
		}
		l.Memory = m
	}
	if c.IsSet("cpus") {
		f, err := strconv.ParseFloat(c.String("cpus"), 64)
		if err != nil {
			return nil, fmt.Errorf("--cpus %q: not a number such as 0.5 or 2", c.String("cpus"))
		}
		if f <= 0 {
			return nil, fmt.Errorf("--cpus: must be more than 0, got %g", f)
		}
		l.CPUs = f
	}
	if c.IsSet("pids") {
		if c.Int("pids") < 1 {
			return nil, fmt.Errorf("--pids: must be at least 1, got %d", c.Int("pids"))
		}
		l.PIDs = c.Int("pids")
	}
	if err := l.Validate(); err != nil {
		if fe, ok := errors.AsType[*needs.FieldError](err); ok && limitFlag[fe.Field] != "" {
			return nil, fmt.Errorf("%s: %s", limitFlag[fe.Field], fe.Msg)
		}
		return nil, err
	}
	return &l, nil
}
