package spawn

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as the fake child: when SPAWN_HELPER is set the test
// binary runs that helper behaviour instead of the tests (go-plugin's
// helperProcess pattern). After the tests it checks that no wait goroutine
// outlived its child.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SPAWN_HELPER"); mode != "" {
		runHelper(mode, os.Args[1:])
		return
	}
	code := m.Run()
	if code == 0 {
		if err := checkWaitGoroutines(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// runHelper is the body of a fake child. Helpers that block print "ready"
// once they are set up, so tests can wait for that instead of sleeping.
func runHelper(mode string, args []string) {
	switch mode {
	case "exit": // exit N
		n, _ := strconv.Atoi(args[0])
		os.Exit(n)
	case "print-env": // print args, environment and working directory
		for _, a := range args {
			fmt.Println("arg=" + a)
		}
		for _, e := range os.Environ() {
			fmt.Println("env=" + e)
		}
		wd, _ := os.Getwd()
		fmt.Println("dir=" + wd)
		os.Exit(0)
	case "print-cgroup": // the cgroup the command runs in, from its first instruction on
		b, _ := os.ReadFile("/proc/self/cgroup")
		fmt.Printf("cgroup=%s", b)
		os.Exit(0)
	case "alloc": // touch N MiB, 4 MiB at a time, then block
		n, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < n; i += 4 {
			b := make([]byte, 4<<20)
			for j := range len(b) / 4096 {
				b[j*4096] = 1
			}
			keep = append(keep, b)
			fmt.Printf("allocated %d MiB\n", i+4)
		}
		fmt.Println("ready", len(keep))
		block()
	case "spin": // burn CPU on one thread
		fmt.Println("ready")
		for x := 0; ; x++ {
			if x == -1 {
				fmt.Println(x)
			}
		}
	case "sleep-forever":
		fmt.Println("ready")
		block()
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		if addr := os.Getenv("SPAWN_LISTEN"); addr != "" { // hold a port
			if _, err := net.Listen("tcp", addr); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
		if os.Getenv("SPAWN_READY_FD") == "3" { // started by forkGrandchild
			os.NewFile(3, "ready").Close()
		} else {
			fmt.Println("ready")
		}
		block()
	case "fork-grandchild": // start an ignore-term grandchild, then block
		// With SPAWN_SETSID=1 the grandchild leaves the group (setsid), as
		// a daemon does.
		fmt.Printf("grandchild=%d\n", forkGrandchild(os.Getenv("SPAWN_SETSID") == "1"))
		if os.Getenv("SPAWN_THEN_EXIT") == "1" {
			os.Exit(0)
		}
		block()
	default:
		fmt.Fprintln(os.Stderr, "unknown SPAWN_HELPER mode", mode)
		os.Exit(2)
	}
}

// forkGrandchild starts an ignore-term copy of itself, in the same process
// group or, with setsid, in a session of its own, and returns its pid once
// it ignores SIGTERM (and holds its port, with SPAWN_LISTEN).
func forkGrandchild(setsid bool) int {
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SPAWN_HELPER=ignore-term", "SPAWN_READY_FD=3")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	w.Close()
	// EOF once the grandchild closed fd 3, after signal.Ignore.
	if _, err := io.ReadAll(r); err != nil {
		panic(err)
	}
	return cmd.Process.Pid
}

func block() {
	for {
		time.Sleep(time.Hour)
	}
}

// checkWaitGoroutines waits up to timeout for every execProcess.wait
// goroutine to end.
func checkWaitGoroutines(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "(*execProcess).wait") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked wait goroutines:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// helperSpec returns a Spec that runs the test binary in helper mode,
// logging to a fresh file.
func helperSpec(t *testing.T, mode string, args ...string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Instance: t.Name(),
		Command:  append([]string{exe}, args...),
		// The race detector sleeps a second before exiting unless told not to.
		Env:     []string{"SPAWN_HELPER=" + mode, "GORACE=atexit_sleep_ms=0"},
		LogPath: t.TempDir() + "/child.log",
	}
}

// startChild starts spec with Exec and stops the child when the test ends.
func startChild(t *testing.T, spec Spec) *Child {
	t.Helper()
	c, err := Start(t.Context(), nil, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background(), 0) })
	return c
}

// waitForLog waits until the child's log contains want.
func waitForLog(t *testing.T, spec Spec, want string) {
	t.Helper()
	retryUntil(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(spec.LogPath)
		return bytes.Contains(b, []byte(want))
	}, "log "+spec.LogPath+" to contain "+strconv.Quote(want))
}

// waitDone waits for the child to exit.
func waitDone(t *testing.T, c *Child) Exit {
	t.Helper()
	select {
	case <-c.Done():
		return c.Exit()
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d did not exit", c.PID())
		return Exit{}
	}
}

// retryUntil polls cond every 10ms until it holds or timeout passes.
func retryUntil(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs. A zombie counts as gone: the grandchildren
// in these tests are reparented to an init that may never reap them.
func alive(pid int) bool {
	state, _, err := readStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}
