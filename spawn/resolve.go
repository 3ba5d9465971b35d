package spawn

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ResolveCommand returns the file a child started with command and env
// runs, or why it cannot run: what [Start] with the exec driver decides,
// for anyone who must know beforehand (the master, before it bids for a
// need). command is Spec.Command, so already expanded with [ExpandArgs]
// against the same env; dir is Spec.Dir ("" for the caller's working
// directory).
//
// A name with a slash is that file, relative to dir: it must be a regular
// file with an execute bit, or the error is the errno exec would give
// (syscall.ENOENT, syscall.EACCES, ...); for a relative name, a dir that is
// not a directory gives the *fs.PathError of the chdir. A bare name is looked up in the
// PATH of env — the child's, never the caller's — as exec.LookPath does,
// skipping entries that are not absolute; none found is exec.ErrNotFound.
// An empty command is [ErrEmptyCommand].
func ResolveCommand(command []string, env []string, dir string) (string, error) {
	if len(command) == 0 {
		return "", ErrEmptyCommand
	}
	name := command[0]
	if !strings.Contains(name, "/") {
		return lookPath(name, env)
	}
	target := name
	if !filepath.IsAbs(target) && dir != "" {
		// The child changes to dir before it execs: a bad dir is the error.
		if err := checkDir(dir); err != nil {
			return "", err
		}
		target = filepath.Join(dir, target)
	}
	fi, err := os.Stat(target)
	switch {
	case err != nil:
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return "", err
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		return "", syscall.EACCES
	}
	return name, nil
}
