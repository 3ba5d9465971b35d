package spawn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exec is the built-in driver: it runs Spec.Command directly with os/exec.
var Exec Driver = execDriver{}

type execDriver struct{}

func (execDriver) Name() string { return "exec" }

// Start forks and execs spec. The child gets stdin from /dev/null, its own
// process group, and stdout and stderr on the LogPath file; the master's copy
// of that file is closed before Start returns. With Spec.Tracking.Cgroup it
// is born in that cgroup (see startInCgroup).
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
	path, err := ResolveCommand(spec.Command, spec.Env, spec.Dir)
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
	logf, err := openLog(spec.LogPath)
	if err != nil {
		return fail(err)
	}
	if logf != nil {
		defer logf.Close() // the child has its own copy
	}
	var cmd *exec.Cmd
	p := &execProcess{done: make(chan struct{})}
	var cg *cgroupTracker
	if dir := spec.Tracking.Cgroup; dir != "" {
		if err := makeChildCgroup(dir); err != nil {
			return fail(err)
		}
		cg = &cgroupTracker{dir: dir}
		p.track = cg
	}
	lm := newLimiter(spec.Tracking, spec.Limits)
	if lm == nil && !spec.Limits.IsZero() {
		return fail(fmt.Errorf("limits %s: the child has no cgroup to hold them", spec.Limits))
	}
	if lm != nil {
		p.limits = lm
		if err := lm.makeV1(); err != nil {
			lm.rmdirV1() // only the empty ones: a populated one is another child's
			if cg != nil {
				cg.cleanup()
			}
			return fail(err)
		}
		if err := lm.apply(); err != nil {
			lm.rmdirV1()
			if cg != nil {
				cg.cleanup()
			}
			return fail(err)
		}
	}
	if cg != nil || lm != nil && len(lm.v1) > 0 {
		if cmd, err = startInCgroup(path, spec, logf, cg, lm); err != nil {
			if lm != nil {
				lm.rmdirV1() // the shell never ran the command, and was reaped
			}
			if cg != nil {
				cg.cleanup()
			}
		}
	} else {
		cmd, err = startPlain(path, spec, logf)
	}
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok && pe.Op == "fork/exec" {
			err = pe.Err // StartError already names the command
		}
		return fail(err)
	}
	p.cmd, p.pid = cmd, cmd.Process.Pid
	// The child is not reaped before wait runs, so its /proc entry is
	// still there (as a zombie at worst) and belongs to it.
	p.startTime, _ = ProcStartTime(p.pid)
	if p.track == nil {
		p.track = &groupTracker{pgid: p.pid, since: p.startTime, marks: spec.Tracking.Marks, held: p.holdGroup, trusted: true}
	}
	go p.wait()
	return p, nil
}

// cloneIntoCgroup is cleared once the kernel refuses clone3 with
// CLONE_INTO_CGROUP (before Linux 5.7, or a seccomp filter that blocks
// clone3); children are then put in their cgroup by startInCgroup's
// fallback.
var cloneIntoCgroup atomic.Bool

func init() { cloneIntoCgroup.Store(true) }

// startInCgroup starts the child inside cg without a moment outside it:
// clone3 with CLONE_INTO_CGROUP creates it there. Where the kernel refuses
// that, the child starts as a shell that waits for a line on stdin, and
// the shell's pid is written to cgroup.procs before the line is sent; the
// shell then execs the command (same pid) with stdin from /dev/null. A
// master that dies in between closes the pipe, and the shell exits 125
// without running the command.
func startInCgroup(path string, spec Spec, logf *os.File, cg *cgroupTracker, lm *limiter) (*exec.Cmd, error) {
	// clone3 reaches the v2 tree only: a child with v1 cgroups goes
	// through the shell.
	if cg != nil && (lm == nil || len(lm.v1) == 0) && cloneIntoCgroup.Load() {
		fd, err := unix.Open(cg.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", cg.dir, err)
		}
		cmdPath, args, err := shellCommand(path, spec, false)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		cmd := newCmd(cmdPath, args, spec, logf)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		err = cmd.Start()
		unix.Close(fd)
		if !cloneRefused(err) {
			return cmd, wrapShell(spec, false, err)
		}
		cloneIntoCgroup.Store(false)
	}
	cmdPath, args, err := shellCommand(path, spec, true)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	cmd := newCmd(cmdPath, args, spec, logf)
	cmd.Stdin = r
	err = cmd.Start()
	r.Close()
	if err != nil {
		return nil, wrapShell(spec, true, err)
	}
	enter := func() error {
		if cg != nil {
			if err := os.WriteFile(filepath.Join(cg.dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
				return fmt.Errorf("enter cgroup %s: %w", cg.dir, err)
			}
		}
		if lm != nil {
			return lm.enter(cmd.Process.Pid)
		}
		return nil
	}
	if err := enter(); err != nil {
		cmd.Process.Kill() // still blocked in read: the command never ran
		cmd.Wait()
		return nil, err
	}
	if _, err := w.Write([]byte("go\n")); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("start child in its cgroups: %w", err)
	}
	return cmd, nil
}

// cloneRefused reports whether a failed start was clone3 refusing
// CLONE_INTO_CGROUP rather than the command failing to exec.
func cloneRefused(err error) bool {
	pe, ok := errors.AsType[*fs.PathError](err)
	if !ok || pe.Op != "fork/exec" {
		return false
	}
	return errors.Is(pe.Err, syscall.ENOSYS) || errors.Is(pe.Err, syscall.EPERM) ||
		errors.Is(pe.Err, syscall.EINVAL) || errors.Is(pe.Err, syscall.EOPNOTSUPP)
}

// startPlain starts the child in its own process group.
func startPlain(path string, spec Spec, logf *os.File) (*exec.Cmd, error) {
	cmdPath, args, err := shellCommand(path, spec, false)
	if err != nil {
		return nil, err
	}
	cmd := newCmd(cmdPath, args, spec, logf)
	return cmd, wrapShell(spec, false, cmd.Start())
}

func newCmd(path string, args []string, spec Spec, logf *os.File) *exec.Cmd {
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
	return cmd
}

// wrapShell says, in a start error, that the command was started through
// the shell, and why.
func wrapShell(spec Spec, waitLine bool, err error) error {
	switch {
	case err == nil:
		return nil
	case spec.ListenPID:
		return fmt.Errorf("through %s, to set LISTEN_PID: %w", listenShell, err)
	case waitLine:
		return fmt.Errorf("through %s, to enter its cgroup first: %w", listenShell, err)
	}
	return err
}

// execProcess is a Process started by Exec. It owns one goroutine, wait,
// which waits for the leader to exit, kills what is left of the child,
// reaps the leader, waits until nothing of the child is left and closes
// done; it ends when the leader exits, so a process that is never stopped
// keeps it running.
type execProcess struct {
	cmd       *exec.Cmd
	pid       int
	startTime uint64
	track     tracker
	limits    *limiter // nil without limits or v1 cgroups
	done      chan struct{}
	exit      Exit // written by wait before done is closed

	// reapMu is held for reading while the process group is signalled
	// through its id, and for writing while the leader is reaped: until
	// then the id is the group's (a zombie keeps it), so no signal to the
	// id can reach a group that reused it.
	reapMu sync.RWMutex
	reaped bool // guarded by reapMu
}

func (p *execProcess) PID() int              { return p.pid }
func (p *execProcess) StartTime() uint64     { return p.startTime }
func (p *execProcess) Done() <-chan struct{} { return p.done }
func (p *execProcess) Tracking() string      { return p.track.String() }

// Usage reads what the child uses from its cgroups.
func (p *execProcess) Usage() Usage { return p.limits.usage() }

func (p *execProcess) Exit() Exit {
	select {
	case <-p.done:
		return p.exit
	default:
		return Exit{Code: -1, Err: ErrNotExited}
	}
}

// Signal sends sig to every process of the child: its cgroup, or its
// process group and the processes that carry its marks. SIGKILL to a
// cgroup goes through cgroup.kill.
func (p *execProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	if sig == syscall.SIGKILL {
		p.track.kill()
		return nil
	}
	return p.track.signal(sig)
}

// holdGroup runs kill if the leader is not reaped yet, and says whether it
// did.
func (p *execProcess) holdGroup(kill func()) bool {
	p.reapMu.RLock()
	defer p.reapMu.RUnlock()
	if p.reaped {
		return false
	}
	kill()
	return true
}

// wait waits for the leader to exit without reaping it, then, like
// systemd's KillMode=control-group, sends SIGKILL to the rest of the child
// (grandchildren that ignored SIGTERM or were forked in the background,
// and with a cgroup or marks those that left the group), reaps the leader,
// and closes done only once nothing of the child is left: whoever waits
// for done (a master releasing ports) never races a grandchild's exit.
func (p *execProcess) wait() {
	waitExited(p.pid)
	p.track.kill()
	p.reapMu.Lock()
	err := p.cmd.Wait()
	p.reaped = true
	p.reapMu.Unlock()
	_ = p.track.waitEmpty(context.Background()) // no deadline: SIGKILL was sent
	oom := p.limits.oomKilled()                 // before the cgroups go
	p.track.cleanup()
	if p.limits != nil {
		removeV1(context.Background(), p.limits.v1)
	}
	p.exit = exitOf(p.cmd.ProcessState, err)
	p.exit.OOMKilled = oom
	close(p.done)
}

// waitExited blocks until the child pid has exited, leaving it to be
// reaped (waitid with WNOWAIT).
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
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

// The shell that sets LISTEN_PID for Spec.ListenPID, and that waits for a
// line on stdin until its pid is in its cgroup (startInCgroup's fallback):
// $$ is its own pid, which exec keeps. PWD, which the shell would add, is
// unset unless Spec.Env has it.
const (
	listenShell  = "/bin/sh"
	listenScript = `LISTEN_PID=$$; export LISTEN_PID; `
	waitScript   = `read -r berth_go || exit 125; exec </dev/null; `
	unsetPWD     = `unset PWD; `
	execScript   = `exec "$@"`
	listenArg0   = "berth-listen" // the shell's $0, in its error messages
)

// shellCommand returns the path and argv that start spec: the command as
// found (path), or, for Spec.ListenPID or waitLine, through the shell. The
// command is given to the shell as path, the file lookPath found, so the
// shell runs the same file; a command found in PATH gets that full path as
// its argv[0]. The file is checked first, since a failed exec in the shell
// would show as exit code 126 or 127 rather than as a start error.
func shellCommand(path string, spec Spec, waitLine bool) (string, []string, error) {
	if !spec.ListenPID && !waitLine {
		return path, spec.Command, nil
	}
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
	script := ""
	if waitLine {
		script += waitScript
	}
	if _, ok := lookupEnv(spec.Env, "PWD"); !ok {
		script += unsetPWD
	}
	if spec.ListenPID {
		script += listenScript
	}
	script += execScript
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
