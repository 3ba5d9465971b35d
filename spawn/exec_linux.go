package spawn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exec is the built-in driver: it runs Spec.Command directly with os/exec.
var Exec Driver = execDriver{}

type execDriver struct{}

func (execDriver) Name() string { return "exec" }

// Start forks and execs spec. The child gets stdin from /dev/null, its own
// process group, and stdout and stderr on the LogPath file; the master's copy
// of that file is closed before Start returns.
//
// The child is not started with exec.CommandContext: ctx only bounds the
// start-up, so Cmd.Cancel and Cmd.WaitDelay are not used either (there are
// no pipes to drain; output goes straight to a file).
func (execDriver) Start(ctx context.Context, spec Spec) (Process, error) {
	if len(spec.Command) == 0 {
		return nil, &StartError{Instance: spec.Instance, Err: ErrEmptyCommand}
	}
	fail := func(err error) (Process, error) {
		return nil, &StartError{Instance: spec.Instance, Command: spec.Command[0], Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	path, err := lookPath(spec.Command[0], spec.Env)
	if err != nil {
		return fail(err)
	}
	if spec.Dir != "" {
		// os.StartProcess skips this check when SysProcAttr is set, and
		// the fork/exec error would name the binary instead of Dir.
		if err := checkDir(spec.Dir); err != nil {
			return fail(err)
		}
	}
	args := spec.Command
	if spec.ListenPID {
		if path, args, err = listenPIDCommand(path, spec); err != nil {
			return fail(err)
		}
	}
	logf, err := openLog(spec.LogPath)
	if err != nil {
		return fail(err)
	}
	env := spec.Env
	if env == nil {
		env = []string{} // nil would mean the master's environment
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Env:         env,
		Dir:         spec.Dir,
		ExtraFiles:  spec.ExtraFiles,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if logf != nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	err = cmd.Start()
	if logf != nil {
		logf.Close() // the child has its own copy
	}
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok && pe.Op == "fork/exec" {
			err = pe.Err // StartError already names the command
		}
		if spec.ListenPID {
			err = fmt.Errorf("through %s, to set LISTEN_PID: %w", listenShell, err)
		}
		return fail(err)
	}
	p := &execProcess{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	// The child is not reaped before wait runs, so its /proc entry is
	// still there (as a zombie at worst) and belongs to it.
	p.startTime, _ = ProcStartTime(p.pid)
	go p.wait()
	return p, nil
}

// execProcess is a Process started by Exec. It owns one goroutine, wait,
// which reaps the leader, sweeps the group and closes done; it ends when the
// leader exits, so a process that is never stopped keeps it running.
type execProcess struct {
	cmd       *exec.Cmd
	pid       int
	startTime uint64
	done      chan struct{}
	exit      Exit // written by wait before done is closed
}

func (p *execProcess) PID() int              { return p.pid }
func (p *execProcess) StartTime() uint64     { return p.startTime }
func (p *execProcess) Done() <-chan struct{} { return p.done }

func (p *execProcess) Exit() Exit {
	select {
	case <-p.done:
		return p.exit
	default:
		return Exit{Code: -1, Err: ErrNotExited}
	}
}

func (p *execProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	// Signalling the group id is safe even if the leader has just been
	// reaped: Linux does not reuse an id while a process group holds it.
	err := syscall.Kill(-p.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// wait reaps the leader and then, like systemd's KillMode=control-group,
// sends SIGKILL to the rest of its process group (grandchildren that ignored
// SIGTERM or were forked in the background) before closing done.
func (p *execProcess) wait() {
	err := p.cmd.Wait()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH: group already empty
	p.exit = exitOf(p.cmd.ProcessState, err)
	close(p.done)
}

func exitOf(ps *os.ProcessState, err error) Exit {
	if _, ok := errors.AsType[*exec.ExitError](err); ok {
		err = nil
	}
	if ps == nil {
		return Exit{Code: -1, Err: err}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return Exit{Code: -1, Signal: unix.SignalName(ws.Signal()), Err: err}
	}
	return Exit{Code: ps.ExitCode(), Err: err}
}

// The shell that sets LISTEN_PID for Spec.ListenPID: $$ is its own pid,
// which exec keeps. PWD, which the shell would add, is unset unless Spec.Env
// has it.
const (
	listenShell     = "/bin/sh"
	listenScript    = `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`
	listenScriptPWD = `unset PWD; ` + listenScript
	listenArg0      = "berth-listen" // the shell's $0, in its error messages
)

// listenPIDCommand returns the path and argv that start spec through the
// shell. The command is given to it as path, the file lookPath found, so
// the shell runs the same file; a command found in PATH gets that full path
// as its argv[0]. The file is checked first, since a failed exec in the
// shell would show as exit code 126 or 127 rather than as a start error.
func listenPIDCommand(path string, spec Spec) (string, []string, error) {
	target := path
	if !filepath.IsAbs(target) && spec.Dir != "" {
		target = filepath.Join(spec.Dir, target)
	}
	fi, err := os.Stat(target)
	switch {
	case err != nil:
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return "", nil, err
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		return "", nil, syscall.EACCES
	}
	script := listenScriptPWD
	if _, ok := lookupEnv(spec.Env, "PWD"); ok {
		script = listenScript
	}
	args := append([]string{listenShell, "-c", script, listenArg0, path}, spec.Command[1:]...)
	return listenShell, args, nil
}

// lookPath resolves name like exec.LookPath, but against the PATH in env.
// A name with a slash is returned unchanged; a PATH entry that is not
// absolute is ignored, as exec.LookPath refuses such results by default.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(envValue(env, "PATH")) {
		if !filepath.IsAbs(dir) {
			continue
		}
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", exec.ErrNotFound
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	} else if err == nil && !fi.IsDir() {
		err = syscall.ENOTDIR
	}
	if err != nil {
		return &fs.PathError{Op: "chdir", Path: dir, Err: err}
	}
	return nil
}

// openLog opens path for appending, creating it and its parents. It returns
// nil for "", which makes os/exec connect the output to /dev/null.
func openLog(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return f, nil
}
