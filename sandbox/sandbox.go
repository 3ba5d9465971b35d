package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"berth/spawn"
)

// A Sandbox turns a [spawn.Spec] into one that runs the same command under
// bubblewrap (see the package doc for the isolation). The zero value looks
// bwrap and env up in PATH each time. A Sandbox is safe for concurrent use;
// its fields must not change once it is in use.
type Sandbox struct {
	// Bwrap is the bwrap program; "" means "bwrap" looked up in PATH.
	Bwrap string
	// Env is GNU coreutils' env (8.31 or later); "" means "env" looked up
	// in PATH.
	Env string
}

// signals are the signals bwrap outside the sandbox ignores, so that a
// signal sent to the child's whole process group (or cgroup) does not kill
// bwrap before the command has exited; inside, the command gets them back
// at their default action.
const signals = "HUP,INT,QUIT,USR1,USR2,ALRM,TERM"

// reachEnv are the variables of the child contract that name a file the
// child must reach (its control socket, its peers file): their directory
// is bound read-only where the sandbox would hide it.
var reachEnv = []string{"BERTH_PIPE", "BERTH_PEERS_FILE"}

// The shell that sets LISTEN_PID inside the sandbox, as spawn's Exec
// driver does outside it for Spec.ListenPID.
const (
	listenShell  = "/bin/sh"
	listenScript = `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`
	listenArg0   = "berth-listen"
)

// Wrap returns spec rewritten to run its command in a sandbox with opts:
//
//	env --ignore-signal=SIGS bwrap --unshare-pid --cap-drop ALL [--new-session] \
//	    [mounts] --chdir DIR -- \
//	    env --default-signal=SIGS -u PWD COMMAND-PATH ARGS...
//
// where COMMAND-PATH is the file spec.Command[0] names, found as spawn's
// Exec driver finds it ([spawn.ResolveCommand]: in the PATH of spec.Env,
// or relative to spec.Dir), and DIR is spec.Dir, or the caller's working
// directory if that is "". bwrap sets PWD: the inner env unsets it again,
// or restores Spec.Env's PWD where that has one. Env, LogPath, ExtraFiles (fd 3 and up, kept by
// bwrap) and Tracking are passed on unchanged; with ListenPID, LISTEN_PID
// is set by a shell inside the sandbox, to the command's pid there, and
// the returned spec has ListenPID false. With a cgroup or marks in
// spec.Tracking the command gets a session of its own (--new-session);
// without, it stays in the process group, the only way spawn finds it.
// Start the result with spawn.Exec
// (or use [Driver]).
//
// opts are checked on this machine ([Options.Check]). Errors say which
// option, path or program was wrong; a command that cannot be found is
// the error [spawn.ResolveCommand] gives.
func (s *Sandbox) Wrap(spec spawn.Spec, opts Options) (spawn.Spec, error) {
	bwrap, env, err := s.programs()
	if err != nil {
		return spawn.Spec{}, err
	}
	path, err := spawn.ResolveCommand(spec.Command, spec.Env, spec.Dir)
	if err != nil {
		return spawn.Spec{}, err
	}
	dir := spec.Dir
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return spawn.Spec{}, fmt.Errorf("working directory: %w", err)
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return spawn.Spec{}, fmt.Errorf("working directory: %w", err)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	if strings.Contains(path, "=") {
		// env would take it for a variable to set.
		return spawn.Spec{}, fmt.Errorf("command %s: a path with '=' cannot run in the sandbox", path)
	}
	opts, err = opts.resolve()
	if err != nil {
		return spawn.Spec{}, err
	}
	var hide []string
	if v, ok := lookupEnv(spec.Env, "BERTH_PIPE"); ok && filepath.IsAbs(v) {
		// The master's socket directory: BERTH_PIPE is alone in a
		// directory of its own there, bound back below.
		sockDir := filepath.Dir(filepath.Dir(filepath.Clean(v)))
		if real, err := filepath.EvalSymlinks(sockDir); err == nil && real != "/" && !within(real, "/dev") && !within(real, "/proc") {
			hide = append(hide, real)
		}
	}
	ms := newMounts(opts, hide)
	reach := []string{dir}
	for _, k := range reachEnv {
		if v, ok := lookupEnv(spec.Env, k); ok && filepath.IsAbs(v) {
			reach = append(reach, filepath.Dir(filepath.Clean(v)))
		}
	}
	reach = append(reach, path)
	for _, p := range reach {
		if err := ms.reach(p); err != nil {
			return spawn.Spec{}, err
		}
	}

	args := []string{env, "--ignore-signal=" + signals, bwrap,
		"--unshare-pid", "--cap-drop", "ALL"}
	if spec.Tracking.Cgroup != "" || len(spec.Tracking.Marks) > 0 {
		// The command leaves the master's terminal session (no TIOCSTI
		// into it), and with it the process group; its cgroup or its
		// marks still find and signal it.
		args = append(args, "--new-session")
	}
	args = append(args, ms.args()...)
	args = append(args, "--chdir", dir, "--")
	if spec.ListenPID {
		args = append(args, listenShell, "-c", listenScript, listenArg0)
	}
	args = append(args, env, "--default-signal="+signals)
	// bwrap sets PWD to the directory it changed to: put back Spec.Env's.
	if pwd, ok := lookupEnv(spec.Env, "PWD"); ok {
		args = append(args, "PWD="+pwd)
	} else {
		args = append(args, "-u", "PWD")
	}
	args = append(args, path)
	args = append(args, spec.Command[1:]...)

	out := spec
	out.Command = args
	out.Dir = dir
	out.ListenPID = false
	return out, nil
}

// programs returns the paths of bwrap and env.
func (s *Sandbox) programs() (bwrap, env string, err error) {
	if bwrap, err = find(s.Bwrap, "bwrap"); err != nil {
		return "", "", ErrNoBwrap
	}
	if env, err = find(s.Env, "env"); err != nil {
		return "", "", ErrNoEnv
	}
	if strings.Contains(bwrap, "=") {
		return "", "", fmt.Errorf("bwrap at %s: a path with '=' cannot be run through env", bwrap)
	}
	return bwrap, env, nil
}

func find(given, name string) (string, error) {
	if given == "" {
		given = name
	}
	path, err := exec.LookPath(given)
	if err != nil {
		return "", err
	}
	return filepath.Abs(path)
}

// A mount is one mount bwrap makes in the sandbox, at the same path as on
// the host.
type mount struct {
	flag string // "--ro-bind", "--bind", "--tmpfs", "--dev" or "--proc"
	path string
}

// hides reports whether the mount hides what the host has at and below
// its path.
func (m mount) hides() bool { return m.flag != "--ro-bind" && m.flag != "--bind" }

type mounts []mount

// newMounts lists the sandbox's mounts: the read-only root, /dev, /proc,
// a private /tmp, a tmpfs on each of hide, and opts (after hide, so that
// at the same path the option's mount is made last and shows).
func newMounts(opts Options, hide []string) mounts {
	ms := mounts{{"--ro-bind", "/"}, {"--dev", "/dev"}, {"--proc", "/proc"}, {"--tmpfs", "/tmp"}}
	for _, p := range hide {
		ms = append(ms, mount{"--tmpfs", p})
	}
	for _, p := range opts.Tmpfs {
		ms = append(ms, mount{"--tmpfs", p})
	}
	for _, p := range opts.ROBind {
		ms = append(ms, mount{"--ro-bind", p})
	}
	for _, p := range opts.Bind {
		ms = append(ms, mount{"--bind", p})
	}
	return ms
}

// covering returns the deepest mount at or above path, the one whose
// content the child sees there.
func (ms mounts) covering(path string) mount {
	best := ms[0]
	for _, m := range ms {
		if within(path, m.path) && depth(m.path) >= depth(best.path) {
			best = m
		}
	}
	return best
}

// reach makes path visible in the sandbox, read-only, if a tmpfs (or /dev
// or /proc) would hide it: the child's working directory, its command,
// the directory of its control socket.
//
// A path with symbolic links is judged, and bound, as the file they lead
// to: the links themselves are followed in the read-only root.
func (ms *mounts) reach(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return fmt.Errorf("make %s visible in the sandbox: %w", path, err)
	}
	if !ms.covering(real).hides() {
		return nil
	}
	if within(real, "/dev") || within(real, "/proc") {
		return fmt.Errorf("%s: under /dev or /proc, which the sandbox mounts itself", path)
	}
	*ms = append(*ms, mount{"--ro-bind", real})
	return nil
}

// args returns the mounts as bwrap arguments, shallowest first so that a
// deeper mount is made on top of the one that covers it. Mounts at the
// same depth keep their order.
func (ms mounts) args() []string {
	sorted := slices.Clone(ms)
	slices.SortStableFunc(sorted, func(a, b mount) int { return depth(a.path) - depth(b.path) })
	var out []string
	for _, m := range sorted {
		switch m.flag {
		case "--ro-bind", "--bind":
			out = append(out, m.flag, m.path, m.path)
		default:
			out = append(out, m.flag, m.path)
		}
	}
	return out
}

// depth is the number of elements of a clean absolute path: 0 for "/".
func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// lookupEnv returns the value of the last definition of key in env.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
