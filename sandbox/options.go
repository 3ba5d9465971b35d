package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Options are a need's driver options for the sandbox, as `need add
// --driver bwrap --driver-opt KEY=PATH` gives them. Every path is
// absolute and clean, and appears once across the three lists.
type Options struct {
	// Bind lists host directories (or files) the child may write: each is
	// bound read-write at the same path (bind=/srv/data).
	Bind []string
	// ROBind lists host paths bound read-only at the same path
	// (ro-bind=/path): only useful below a Tmpfs or /tmp, since the rest
	// of the root is visible read-only anyway.
	ROBind []string
	// Tmpfs lists directories hidden behind an empty private tmpfs
	// (tmpfs=/home), writable by the child and gone when it exits.
	Tmpfs []string
}

// The option keys.
const (
	optBind   = "bind"
	optROBind = "ro-bind"
	optTmpfs  = "tmpfs"
)

// ParseOptions parses driver options, each "key=value" (a key may repeat):
//
//	bind=/srv/data      bound read-write
//	ro-bind=/srv/conf   bound read-only
//	tmpfs=/home         hidden behind an empty private tmpfs
//
// It checks the syntax only, so it can run anywhere (the bwrap driver's
// CheckOptions, asked before a master bids): each path must be absolute, without a ".."
// element or a NUL byte, must not be "/" or under /proc or /dev (the
// sandbox mounts those itself), and may appear in one option only. Paths
// are cleaned ("/srv/data/" is "/srv/data"). [Options.Check] checks that
// they exist on this machine; where a path is a symbolic link, the sandbox
// binds what it leads to. Errors are *OptionError naming the option.
func ParseOptions(opts []string) (Options, error) {
	var o Options
	seen := map[string]string{} // clean path => option that named it
	for _, opt := range opts {
		key, value, ok := strings.Cut(opt, "=")
		if !ok {
			return Options{}, &OptionError{Option: opt, Err: errors.New("want key=value")}
		}
		var list *[]string
		switch key {
		case optBind:
			list = &o.Bind
		case optROBind:
			list = &o.ROBind
		case optTmpfs:
			list = &o.Tmpfs
		default:
			return Options{}, &OptionError{Option: opt, Err: ErrUnknownOption}
		}
		p, err := cleanPath(value)
		if err != nil {
			return Options{}, &OptionError{Option: opt, Err: err}
		}
		if first, dup := seen[p]; dup {
			return Options{}, &OptionError{Option: opt, Err: fmt.Errorf("%w: also in %q", ErrDuplicatePath, first)}
		}
		seen[p] = opt
		*list = append(*list, p)
	}
	return o, nil
}

// cleanPath checks one option path and returns it cleaned.
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty", ErrBadPath)
	case strings.ContainsRune(p, 0):
		return "", fmt.Errorf("%w: has a NUL byte", ErrBadPath)
	case !filepath.IsAbs(p):
		return "", fmt.Errorf("%w: not absolute", ErrBadPath)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return "", fmt.Errorf("%w: has a .. element", ErrBadPath)
	}
	p = filepath.Clean(p)
	switch {
	case p == "/":
		return "", fmt.Errorf("%w: the root itself", ErrBadPath)
	case within(p, "/proc"), within(p, "/dev"):
		return "", fmt.Errorf("%w: under /proc or /dev, which the sandbox mounts itself", ErrBadPath)
	}
	return p, nil
}

// Check checks that the options can be used on this machine: every Bind
// and ROBind path exists, and every Tmpfs path is a directory (bwrap
// cannot create a mount point in the read-only root). Errors are
// *OptionError naming the option.
func (o Options) Check() error {
	for _, l := range []struct {
		key   string
		paths []string
	}{{optBind, o.Bind}, {optROBind, o.ROBind}, {optTmpfs, o.Tmpfs}} {
		for _, p := range l.paths {
			fi, err := os.Stat(p)
			if pe, ok := errors.AsType[*fs.PathError](err); ok {
				err = pe.Err
			} else if err == nil && l.key == optTmpfs && !fi.IsDir() {
				err = errors.New("not a directory")
			}
			if err != nil {
				return &OptionError{Option: l.key + "=" + p, Err: err}
			}
		}
	}
	return nil
}

// resolve checks the options (Check) and returns them with every path's
// symbolic links resolved: bwrap cannot bind onto a path that is a link in
// the read-only root, so the file a link leads to is bound at its own
// path, where the link, visible in the root, leads the child.
func (o Options) resolve() (Options, error) {
	if err := o.Check(); err != nil {
		return Options{}, err
	}
	var out Options
	for _, l := range []struct {
		key string
		in  []string
		out *[]string
	}{{optBind, o.Bind, &out.Bind}, {optROBind, o.ROBind, &out.ROBind}, {optTmpfs, o.Tmpfs, &out.Tmpfs}} {
		for _, p := range l.in {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return Options{}, &OptionError{Option: l.key + "=" + p, Err: err}
			}
			*l.out = append(*l.out, real)
		}
	}
	return out, nil
}

// Strings returns the options as "key=value" strings, the form
// ParseOptions takes.
func (o Options) Strings() []string {
	var out []string
	for _, p := range o.Bind {
		out = append(out, optBind+"="+p)
	}
	for _, p := range o.ROBind {
		out = append(out, optROBind+"="+p)
	}
	for _, p := range o.Tmpfs {
		out = append(out, optTmpfs+"="+p)
	}
	return out
}

// within reports whether path is dir or below it; both are clean and
// absolute.
func within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}
