package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns both ends of a new pseudo-terminal: the terminal side
// (what a program writes to) and the controller side (what a terminal
// emulator reads).
func openPTY(t *testing.T) (term, ctrl *os.File) {
	t.Helper()
	ctrl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { ctrl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctrl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ctrl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	term, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { term.Close() })
	return term, ctrl
}

// TestIsTerminal: a pseudo-terminal is a terminal; /dev/null (a character
// device, which isTerminal took for a terminal), a file and a buffer are not.
func TestIsTerminal(t *testing.T) {
	term, _ := openPTY(t)
	if !isTerminal(term) {
		t.Error("isTerminal(pseudo-terminal) = false")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Error("isTerminal(/dev/null) = true")
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if isTerminal(file) {
		t.Error("isTerminal(a regular file) = true")
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("isTerminal(a buffer) = true")
	}
}

// TestWaitProgressOnTerminal: on a terminal, --wait redraws one progress
// line (carriage return, erase line) and ends it with a newline once every
// instance runs.
func TestWaitProgressOnTerminal(t *testing.T) {
	srv := startLan(t)
	runFakeMaster(t, srv, "0123456789abcdef", "ma")
	term, ctrl := openPTY(t)
	var screen bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the terminal emulator: reads until the terminal side is closed
		defer wg.Done()
		io.Copy(&screen, ctrl) // ends with EIO once term is closed and drained
	}()
	code := runApp(t.Context(), []string{"lanmanager", "need", "add", "web", "--addr", srv.Addr(), "--instances", "2", "--wait", "--", "x"}, term, io.Discard)
	term.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		ctrl.Close()
		<-done
		t.Fatal("the pseudo-terminal's output did not end")
	}
	out := screen.String()
	if code != 0 {
		t.Fatalf("need add --wait on a terminal: exit %d, %q", code, out)
	}
	// The terminal turns each \n into \r\n (ONLCR).
	if !strings.Contains(out, "\r\x1b[Kweb: 2/2 running\r\n") {
		t.Errorf("on a terminal: %q; want the progress line redrawn (\\r\\x1b[K) and ended with a newline", out)
	}
	if n := strings.Count(out, "\r\n"); n != 2 {
		t.Errorf("on a terminal: %q has %d lines, want 2 (the added line and the progress line)", out, n)
	}
}
