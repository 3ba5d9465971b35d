package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"berth/spawn"
)

// runTTYHelper: "tiocsti" tries to push a character into its controlling
// terminal; "spawn-tiocsti", run in a terminal, starts "tiocsti" in a
// sandbox (with a mark when SANDBOX_TTY_MARKS is set, as a master would)
// and prints what it said.
func runTTYHelper(mode string) int {
	if mode == "tiocsti" {
		f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			fmt.Println("tiocsti refused:", err)
			return 0
		}
		b := byte('#')
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TIOCSTI, uintptr(unsafe.Pointer(&b))); errno != 0 {
			fmt.Println("tiocsti refused:", errno)
			return 0
		}
		fmt.Println("tiocsti ok")
		return 0
	}
	exe, _ := os.Executable()
	dir, err := os.MkdirTemp("", "tty")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	spec := spawn.Spec{Command: []string{exe}, Dir: dir, LogPath: filepath.Join(dir, "log"),
		Env: []string{helperEnv + "=tiocsti", "GORACE=atexit_sleep_ms=0", "BERTH_ALLOC=tty"}}
	if os.Getenv("SANDBOX_TTY_MARKS") != "" {
		spec.Tracking.Marks = []string{"BERTH_ALLOC=tty"}
	}
	c, err := spawn.Start(context.Background(), Driver{}, spec)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	<-c.Done()
	b, _ := os.ReadFile(spec.LogPath)
	fmt.Printf("child said: %s", b)
	return 0
}

// TestNoTerminalInjection: a master started from a shell has a controlling
// terminal, which its children share. A sandboxed child that could use
// TIOCSTI on it would type commands into that shell; with a mark (as a
// master always gives) the command gets a session of its own
// (--new-session) and has no terminal. The master side runs under
// script(1), which gives it a terminal.
func TestNoTerminalInjection(t *testing.T) {
	requireSandbox(t)
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) (Debian's bsdutils) to give the master a terminal")
	}
	exe, _ := os.Executable()
	run := func(marks bool) string {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, "-qec", "'"+exe+"' -test.run=^$", "/dev/null")
		cmd.Env = []string{"PATH=/usr/bin:/bin", helperEnv + "=spawn-tiocsti", "GORACE=atexit_sleep_ms=0", "SHELL=/bin/sh"}
		if marks {
			cmd.Env = append(cmd.Env, "SANDBOX_TTY_MARKS=1")
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("script: %v; output:\n%s", err, out)
		}
		return string(out)
	}
	if out := run(true); !strings.Contains(out, "child said: tiocsti refused: open /dev/tty: no such device or address") {
		t.Errorf("with a mark, want no controlling terminal in the sandbox; got:\n%s", out)
	}
	// Without marks the command stays in the master's session (spawn could
	// not find it otherwise), so the test can see the difference.
	legacy, _ := os.ReadFile("/proc/sys/dev/tty/legacy_tiocsti")
	out := run(false)
	if strings.TrimSpace(string(legacy)) != "0" && !strings.Contains(out, "child said: tiocsti ok") {
		t.Errorf("without a mark, want the child in the terminal's session (TIOCSTI allowed here); got:\n%s", out)
	}
}
