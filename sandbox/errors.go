package sandbox

import (
	"errors"
	"fmt"
)

// Errors about driver options (ParseOptions, Options.Check).
var (
	// ErrUnknownOption means an option whose key is not bind, ro-bind or
	// tmpfs.
	ErrUnknownOption = errors.New("unknown option (known: bind, ro-bind, tmpfs)")
	// ErrBadPath means an option's path is empty, relative, has a ".."
	// element, or names "/", /proc or /dev.
	ErrBadPath = errors.New("bad path")
	// ErrDuplicatePath means two options name the same path.
	ErrDuplicatePath = errors.New("path given twice")
)

// Errors about the machine (Sandbox.Wrap, Sandbox.Available).
var (
	// ErrNoBwrap means the bwrap program was not found.
	ErrNoBwrap = errors.New("bwrap not found in PATH (install Debian's bubblewrap package)")
	// ErrNoEnv means the env program (GNU coreutils 8.31 or later, for
	// --ignore-signal and --default-signal) was not found.
	ErrNoEnv = errors.New("env not found in PATH")
)

// OptionError reports a driver option that cannot be used: its key and
// value as given, and why.
type OptionError struct {
	Option string // "key=value" as given
	Err    error  // ErrUnknownOption, ErrBadPath, ErrDuplicatePath, or an fs error
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("driver option %q: %v", e.Option, e.Err)
}

func (e *OptionError) Unwrap() error { return e.Err }
