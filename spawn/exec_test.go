package spawn

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestExitCode(t *testing.T) {
	for _, code := range []int{0, 3} {
		c := startChild(t, helperSpec(t, "exit", strconv.Itoa(code)))
		got := waitDone(t, c)
		want := Exit{Code: code}
		if got != want {
			t.Errorf("exit %d: got %+v, want %+v", code, got, want)
		}
		if s, want := got.String(), "exit code "+strconv.Itoa(code); s != want {
			t.Errorf("String() = %q, want %q", s, want)
		}
	}
}

func TestExitSignal(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	waitForLog(t, spec, "ready")
	if err := syscall.Kill(c.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := waitDone(t, c)
	if want := (Exit{Code: -1, Signal: "SIGKILL"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if s := got.String(); s != "signal SIGKILL" {
		t.Errorf("String() = %q", s)
	}
}

func TestExitBeforeDone(t *testing.T) {
	spec := helperSpec(t, "sleep-forever")
	c := startChild(t, spec)
	if e := c.Exit(); !errors.Is(e.Err, ErrNotExited) || e.Code != -1 {
		t.Errorf("Exit() while running = %+v", e)
	}
	c.Stop(t.Context(), 0)
	if err := c.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
	}
}

// TestLogAndEnv checks that output is appended to LogPath, whose directory
// is created, and that the child gets exactly Spec.Env, Spec.Dir and the
// expanded arguments.
func TestLogAndEnv(t *testing.T) {
	spec := helperSpec(t, "print-env")
	spec.LogPath = filepath.Join(t.TempDir(), "logs", "web", "web.0.log")
	spec.Env = append(spec.Env, "BERTH_PORT_HTTP=8080", "NAME=web.0")
	spec.Dir = t.TempDir()
	spec.Command = ExpandArgs(append(spec.Command, "--listen=:${BERTH_PORT_HTTP}", "$NAME"), spec.Env)

	for range 2 { // the second run appends
		if e := waitDone(t, startChild(t, spec)); e != (Exit{}) {
			t.Fatalf("exit: %v", e)
		}
	}
	b, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	var once []string
	for _, a := range spec.Command[1:] {
		once = append(once, "arg="+a)
	}
	for _, e := range spec.Env {
		once = append(once, "env="+e)
	}
	once = append(once, "dir="+spec.Dir)
	want := slices.Concat(once, once)
	got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Contains(got, "arg=--listen=:8080") {
		t.Errorf("argument not expanded")
	}

	for path, want := range map[string]fs.FileMode{
		spec.LogPath:                             0o640,
		filepath.Dir(spec.LogPath):               0o750 | fs.ModeDir,
		filepath.Dir(filepath.Dir(spec.LogPath)): 0o750 | fs.ModeDir,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestNoLogPath(t *testing.T) {
	spec := helperSpec(t, "print-env")
	spec.LogPath = ""
	if e := waitDone(t, startChild(t, spec)); e != (Exit{}) {
		t.Fatalf("exit: %v", e)
	}
}

// TestPathFromEnv checks that Command[0] is looked up in the PATH of
// Spec.Env, not the master's.
func TestPathFromEnv(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "berth-spawn-helper")); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec(t, "exit", "7")
	spec.Command[0] = "berth-spawn-helper"
	spec.Env = append(spec.Env, "PATH=relative/dir:"+t.TempDir()+":"+bin)
	if e := waitDone(t, startChild(t, spec)); e.Code != 7 {
		t.Errorf("exit %v, want code 7", e)
	}
}

func TestProcessGroup(t *testing.T) {
	c := startChild(t, helperSpec(t, "sleep-forever"))
	pgid, err := syscall.Getpgid(c.PID())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != c.PID() {
		t.Errorf("pgid %d, want the child's pid %d", pgid, c.PID())
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		edit    func(*Spec)
		wantErr error
		wantMsg string
	}{
		{"not found", t.Context(), func(s *Spec) {
			s.Command = []string{"nosuch"}
			s.Env = []string{"PATH=" + dir}
		}, exec.ErrNotFound, `start web.0: exec "nosuch": executable file not found in $PATH`},
		{"no PATH", t.Context(), func(s *Spec) {
			s.Command = []string{"sh"}
			s.Env = nil
		}, exec.ErrNotFound, `start web.0: exec "sh": executable file not found in $PATH`},
		{"not executable", t.Context(), func(s *Spec) {
			s.Command = []string{plain}
		}, fs.ErrPermission, `start web.0: exec "` + plain + `": permission denied`},
		{"missing dir", t.Context(), func(s *Spec) {
			s.Dir = filepath.Join(dir, "nodir")
		}, fs.ErrNotExist, "chdir " + filepath.Join(dir, "nodir") + ": no such file or directory"},
		{"dir is a file", t.Context(), func(s *Spec) {
			s.Dir = plain
		}, syscall.ENOTDIR, "chdir " + plain + ": not a directory"},
		{"log is a directory", t.Context(), func(s *Spec) {
			s.LogPath = dir
		}, syscall.EISDIR, "open log"},
		{"empty command", t.Context(), func(s *Spec) {
			s.Command = nil
		}, ErrEmptyCommand, "start web.0: empty command"},
		{"cancelled", cancelled, func(s *Spec) {}, context.Canceled, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := helperSpec(t, "exit", "0")
			spec.Instance = "web.0"
			tt.edit(&spec)
			c, err := Start(tt.ctx, nil, spec)
			if err == nil {
				c.Stop(t.Context(), 0)
				t.Fatal("started")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			se, ok := errors.AsType[*StartError](err)
			if !ok || se.Instance != "web.0" {
				t.Errorf("error %#v is not a *StartError for web.0", err)
			}
		})
	}
}
