package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestListenPID checks that a child started with ListenPID sees its own
// pid in LISTEN_PID, that it is the process Start reported (the shell
// exec'd it in place), and that its argv and environment are otherwise
// exactly those of the Spec.
func TestListenPID(t *testing.T) {
	spec := helperSpec(t, "print-env", "a b", "", "$HOME")
	spec.Env = append(spec.Env, "LISTEN_FDS=0", "LISTEN_PID=1") // a stale value is replaced
	spec.Dir = t.TempDir()
	spec.ListenPID = true
	c := startChild(t, spec)
	if e := waitDone(t, c); e != (Exit{}) {
		t.Fatalf("exit: %v", e)
	}
	b, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	var args, env []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if a, ok := strings.CutPrefix(line, "arg="); ok {
			args = append(args, a)
		}
		if e, ok := strings.CutPrefix(line, "env="); ok {
			env = append(env, e)
		}
	}
	if want := spec.Command[1:]; !slices.Equal(args, want) {
		t.Errorf("args %q, want %q", args, want)
	}
	wantEnv := []string{"SPAWN_HELPER=print-env", "GORACE=atexit_sleep_ms=0", "LISTEN_FDS=0", "LISTEN_PID=" + strconv.Itoa(c.PID())}
	slices.Sort(env)
	slices.Sort(wantEnv)
	if !slices.Equal(env, wantEnv) {
		t.Errorf("environment:\n got  %q\n want %q", env, wantEnv)
	}
	if !bytes.Contains(b, []byte("dir="+spec.Dir+"\n")) {
		t.Errorf("log %q lacks dir=%s", b, spec.Dir)
	}
}

// TestListenPIDSameProcess: the pid Start returns is the command itself
// once it runs, with its own argv and the start time Start read, and the
// extra files are there at fd 3.
func TestListenPIDSameProcess(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fmt.Fprintln(w, "from the master")
	w.Close()
	dir := t.TempDir()
	spec := Spec{
		Instance:   t.Name(),
		Command:    []string{"sh", "-c", `read line <&3; echo "fd3=$line pid=$$ listen=$LISTEN_PID"; exec sleep 600`},
		Env:        []string{"PATH=" + os.Getenv("PATH")},
		LogPath:    filepath.Join(dir, "child.log"),
		ExtraFiles: []*os.File{r},
		ListenPID:  true,
	}
	c := startChild(t, spec)
	want := fmt.Sprintf("fd3=from the master pid=%d listen=%d", c.PID(), c.PID())
	waitForLog(t, spec, want)
	retryUntil(t, 10*time.Second, func() bool {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.PID()))
		return string(cmdline) == "sleep\x00600\x00"
	}, "the child to exec sleep in place")
	if st, err := ProcStartTime(c.PID()); err != nil || st != c.StartTime() {
		t.Errorf("start time %d, %v; Start read %d", st, err, c.StartTime())
	}
}

// TestListenPIDPWD: PWD, which the shell would add, is kept only when the
// Spec sets it.
func TestListenPIDPWD(t *testing.T) {
	spec := helperSpec(t, "print-env")
	spec.Dir = t.TempDir()
	spec.Env = append(spec.Env, "PWD=/somewhere")
	spec.ListenPID = true
	if e := waitDone(t, startChild(t, spec)); e != (Exit{}) {
		t.Fatalf("exit: %v", e)
	}
	b, _ := os.ReadFile(spec.LogPath)
	// The shell sets PWD to where it runs.
	if !bytes.Contains(b, []byte("env=PWD="+spec.Dir+"\n")) {
		t.Errorf("log %q lacks PWD=%s", b, spec.Dir)
	}
}

// TestListenPIDStartErrors: a command that cannot run is a start error, as
// without the shell, not an exit code 126 or 127 from it.
func TestListenPIDStartErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		edit    func(*Spec)
		wantErr error
		wantMsg string
	}{
		{"not found", func(s *Spec) {
			s.Command = []string{"nosuch"}
			s.Env = []string{"PATH=" + dir}
		}, exec.ErrNotFound, `start web.0: exec "nosuch": executable file not found in $PATH`},
		{"missing file", func(s *Spec) {
			s.Command = []string{filepath.Join(dir, "gone")}
		}, fs.ErrNotExist, "no such file or directory"},
		{"relative to a missing Dir", func(s *Spec) {
			s.Command = []string{"./plain"}
			s.Dir = filepath.Join(dir, "nodir")
		}, fs.ErrNotExist, "chdir " + filepath.Join(dir, "nodir")},
		{"not executable", func(s *Spec) {
			s.Command = []string{plain}
		}, fs.ErrPermission, `start web.0: exec "` + plain + `": permission denied`},
		{"relative, not executable", func(s *Spec) {
			s.Command = []string{"./plain"}
			s.Dir = dir
		}, fs.ErrPermission, `exec "./plain": permission denied`},
		{"a directory", func(s *Spec) {
			s.Command = []string{dir}
		}, fs.ErrPermission, "permission denied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := helperSpec(t, "exit", "0")
			spec.Instance = "web.0"
			spec.ListenPID = true
			tt.edit(&spec)
			c, err := Start(t.Context(), nil, spec)
			if err == nil {
				c.Stop(t.Context(), 0)
				t.Fatal("started")
			}
			_, isStart := errors.AsType[*StartError](err)
			if !isStart || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q: want a *StartError matching %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}
