// Package leakcheck fails a test binary whose tests leave goroutines
// running. Only tests import it, from their TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(leakcheck.Run(m)) }
//
// It reads every goroutine's stack with runtime.Stack, as
// go.uber.org/goleak does, in a few dozen lines and without a module.
//
// # Caveats
//
// Goroutines the standard library keeps for the life of the process (the
// signal watcher of os/signal) are not counted. The check runs once, after
// all the tests, and only when they passed: a failed test often leaves its
// goroutines behind and that would bury its own message.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Timeout is how long Run waits for goroutines to end after the tests.
const Timeout = 5 * time.Second

// always lists functions whose goroutines live as long as the process.
var always = []string{
	"os/signal.signal_recv", // signal.Notify's watcher
	"os/signal.loop",
}

// Run runs the tests and, if they passed, waits up to Timeout for every
// goroutine but the caller's to end. It returns the exit code: the tests'
// own, or 1 after printing the stacks of the goroutines still running.
// Goroutines with any of the functions in ignore on their stack are not
// counted.
func Run(m *testing.M, ignore ...string) int {
	return run(m, Timeout, ignore)
}

func run(m *testing.M, timeout time.Duration, ignore []string) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if left := Wait(timeout, ignore...); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "leakcheck: %d goroutine(s) still running %s after the tests:\n\n%s\n",
			len(left), timeout, strings.Join(left, "\n\n"))
		return 1
	}
	return 0
}

// Wait polls until no goroutine but the caller's is running, not counting
// the ones with a function of ignore on their stack, or until timeout has
// passed; it returns the stacks of those still running.
func Wait(timeout time.Duration, ignore ...string) []string {
	deadline := time.Now().Add(timeout)
	for {
		left := Running(ignore...)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running returns the stacks of the goroutines running now, but the
// caller's and those with a function of ignore on their stack.
func Running(ignore ...string) []string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var left []string
	// The caller's goroutine comes first.
	for _, g := range strings.Split(string(buf), "\n\n")[1:] {
		if g = strings.TrimSpace(g); g != "" && !mentions(g, always) && !mentions(g, ignore) {
			left = append(left, g)
		}
	}
	return left
}

func mentions(stack string, funcs []string) bool {
	for _, f := range funcs {
		if strings.Contains(stack, f+"(") {
			return true
		}
	}
	return false
}
