package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/leakcheck"
	"berth/spawn"
)

// helperEnv names the helper behaviour of the test binary run as a child.
const helperEnv = "SANDBOX_HELPER"

// TestMain doubles as the sandboxed child: with SANDBOX_HELPER set, the
// test binary runs that helper instead of the tests (go-plugin's
// helperProcess pattern). The binary lives under the host's /tmp, which
// the sandbox hides, so every test also checks that Wrap makes the command
// visible.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode, os.Args[1:])
		return
	}
	os.Exit(leakcheck.Run(m))
}

// runHelper is the body of a sandboxed child. Helpers that block print
// "ready" once set up.
func runHelper(mode string, args []string) {
	switch mode {
	case "write": // write PATH...: try each, report, exit 1 if any failed
		code := 0
		for _, p := range args {
			if err := os.WriteFile(p, []byte("from the sandbox\n"), 0o644); err != nil {
				fmt.Printf("write %s: %v\n", p, err)
				code = 1
				continue
			}
			fmt.Printf("wrote %s\n", p)
		}
		os.Exit(code)
	case "ps": // the pids /proc shows
		ents, err := os.ReadDir("/proc")
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		var pids []int
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, n)
			}
		}
		slices.Sort(pids)
		fmt.Printf("self=%d pids=%v\n", os.Getpid(), pids)
		os.Exit(0)
	case "serve": // serve "hello" on 127.0.0.1:$PORT until SIGTERM, then exit 0
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		go func() { // ends with the process
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, "hello from the sandbox")
				c.Close()
			}
		}()
		fmt.Println("ready")
		<-sigs
		fmt.Println("got SIGTERM")
		os.Exit(0)
	case "block": // no signal handler: SIGTERM's default action ends it
		fmt.Println("ready")
		select {}
	case "dial": // say ping on $BERTH_PIPE, print the answer
		c, err := net.Dial("unix", os.Getenv("BERTH_PIPE"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Fprintln(c, "ping")
		line, err := bufio.NewReader(c).ReadString('\n')
		fmt.Printf("answer=%q err=%v\n", line, err)
		os.Exit(0)
	case "dial-all": // dial each PATH, report
		for _, p := range args {
			c, err := net.Dial("unix", p)
			if err != nil {
				fmt.Printf("dial %s: failed: %v\n", p, err)
				continue
			}
			c.Close()
			fmt.Printf("dial %s: ok\n", p)
		}
		os.Exit(0)
	case "env": // environment, working directory, pid; "fd3" written to fd 3
		for _, e := range os.Environ() {
			fmt.Println("env=" + e)
		}
		wd, _ := os.Getwd()
		fmt.Println("dir=" + wd)
		fmt.Println("pid=" + strconv.Itoa(os.Getpid()))
		if f := os.NewFile(3, "fd3"); f != nil {
			if _, err := f.WriteString("fd3\n"); err != nil {
				fmt.Println("fd3:", err)
			}
		}
		os.Exit(0)
	case "berth-child": // a child of a real master (master_test.go)
		os.Exit(runBerthChild())
	case "tiocsti", "spawn-tiocsti": // tty_test.go
		os.Exit(runTTYHelper(mode))
	default:
		fmt.Println("unknown helper", mode)
		os.Exit(2)
	}
}

// requireSandbox skips the test where no sandbox can run, with the reason,
// unless CI=true or BERTH_BWRAP=require, where it fails instead (.ci/run
// installs bubblewrap).
func requireSandbox(tb testing.TB) {
	tb.Helper()
	ok, why := Available()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" || os.Getenv("BERTH_BWRAP") == "require" {
		tb.Fatalf("no sandbox here (CI=true or BERTH_BWRAP=require: bwrap must work): %s", why)
	}
	tb.Skipf("no sandbox here (install Debian's bubblewrap; CI=true or BERTH_BWRAP=require turn this skip into a failure): %s", why)
}

// helperSpec is a spec that runs the test binary as helper mode.
func helperSpec(tb testing.TB, mode string, args ...string) spawn.Spec {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	mark := "BERTH_ALLOC=" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return spawn.Spec{
		Instance: tb.Name(),
		Command:  append([]string{exe}, args...),
		Env:      []string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0", "PATH=/usr/bin:/bin", mark},
		Dir:      dir,
		LogPath:  dir + "/child.log",
		Tracking: spawn.Tracking{Marks: []string{mark}},
	}
}

// startChild starts spec in a sandbox with opts; Cleanup stops it.
func startChild(tb testing.TB, spec spawn.Spec, opts Options) *spawn.Child {
	tb.Helper()
	c, err := spawn.Start(tb.Context(), Driver{Options: opts}, spec)
	if err != nil {
		tb.Fatalf("start: %v", err)
	}
	tb.Cleanup(func() { c.Stop(context.Background(), 5*time.Second) })
	return c
}

// waitExit waits for c to exit by itself and returns its Exit and log.
func waitExit(tb testing.TB, c *spawn.Child, logPath string) (spawn.Exit, string) {
	tb.Helper()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		tb.Fatalf("child still running after 20s; log:\n%s", readLog(logPath))
	}
	return c.Exit(), readLog(logPath)
}

// waitLog polls the log until it contains want.
func waitLog(tb testing.TB, logPath, want string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readLog(logPath), want) {
		if time.Now().After(deadline) {
			tb.Fatalf("log has no %q after 20s:\n%s", want, readLog(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err.Error()
	}
	return string(b)
}

func errorsAs[E error](err error) (E, bool) { return errors.AsType[E](err) }
func errorsIs(err, target error) bool       { return errors.Is(err, target) }
