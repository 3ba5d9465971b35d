package master

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTailOffset(t *testing.T) {
	for _, tc := range []struct {
		content string
		n       int
		want    string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 10, "a\nb\nc\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\nc", 2, "b\nc"},
		{"\n\n\n", 2, "\n\n"},
		{strings.Repeat("x", 70000) + "\n" + "y\n", 1, "y\n"},
		{strings.Repeat("x\n", 40000), 3, "x\nx\nx\n"},
	} {
		p := filepath.Join(t.TempDir(), "f")
		os.WriteFile(p, []byte(tc.content), 0o600)
		f, _ := os.Open(p)
		off, end, err := tailOffset(f, tc.n)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if end != int64(len(tc.content)) {
			t.Errorf("tail %d of %.20q: end %d, want the size %d", tc.n, tc.content, end, len(tc.content))
		}
		if got := tc.content[off:]; got != tc.want {
			t.Errorf("tail %d of %.20q: got %.20q (len %d), want %.20q (len %d)", tc.n, tc.content, got, len(got), tc.want, len(tc.want))
		}
	}
}

// TestRotateKeepsWriterAppending: a writer holding the file open with
// O_APPEND (as a child does) goes on writing at the start of the truncated
// file; older files shift and the oldest beyond keep is removed.
func TestRotateKeepsWriterAppending(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.0.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for round := 0; round < 4; round++ {
		fmt.Fprintf(w, "round %d\n", round)
		if ok, err := rotateIfLarger(p, 1000, 2); ok || err != nil {
			t.Fatalf("round %d: rotated a small file: %v %v", round, ok, err)
		}
		w.Write(bytes.Repeat([]byte("z"), 1000))
		if ok, err := rotateIfLarger(p, 1000, 2); !ok || err != nil {
			t.Fatalf("round %d: did not rotate: %v %v", round, ok, err)
		}
		if fi, _ := os.Stat(p); fi.Size() != 0 {
			t.Fatalf("round %d: live file has %d bytes after rotation", round, fi.Size())
		}
	}
	fmt.Fprintf(w, "after\n")
	if b, _ := os.ReadFile(p); string(b) != "after\n" {
		t.Fatalf("live file after rotations: %q (the writer's offset was not the end)", b)
	}
	for i, want := range map[int]string{1: "round 3\n", 2: "round 2\n"} {
		b, err := os.ReadFile(fmt.Sprintf("%s.%d", p, i))
		if err != nil || !strings.HasPrefix(string(b), want) {
			t.Errorf("%s.%d starts with %.10q, %v; want %q", p, i, b, err, want)
		}
	}
	if _, err := os.Stat(p + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists beyond logkeep 2: %v", p, err)
	}
}

// TestStreamFollowsRotation: a follower sees every line, in order, across
// copy-and-truncate rotations and a replacement of the file.
func TestStreamFollowsRotation(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.0.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { w.Close() }()
	fmt.Fprintf(w, "line 0\n")
	f := startFollower(t, p)
	received := f.received
	waitForT(t, 5*time.Second, "the follower to start", received(1))
	want := "line 0\n"
	next := 1
	for round := 0; round < 3; round++ {
		for range 50 {
			s := fmt.Sprintf("line %d\n", next)
			next++
			w.WriteString(s)
			want += s
		}
		// Rotate before or after the follower has caught up: both orders,
		// and twice between two looks (rounds 1 and 2).
		if round == 1 {
			waitForT(t, 5*time.Second, "the follower to catch up", received(next))
		}
		if ok, err := rotateIfLarger(p, 10, 3); !ok || err != nil {
			t.Fatalf("rotate: %v %v", ok, err)
		}
	}
	// A replaced file (new inode) is followed too.
	w.Close()
	os.Rename(p, p+".old")
	if w, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err != nil {
		t.Fatal(err)
	}
	waitForT(t, 5*time.Second, "the follower to notice", received(next))
	s := fmt.Sprintf("line %d\n", next)
	next++
	w.WriteString(s)
	want += s
	waitForT(t, 5*time.Second, "every line", received(next))
	if got := f.stop(); got != want {
		t.Fatalf("follower got %d bytes, want %d:\n%s", len(got), len(want), got)
	}
}

func waitForT(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamFollowsRotationKeepOne: with logkeep 1 each rotation replaces
// <path>.1, whose new inode may be the old one's; the follower still reads
// every line exactly once.
func TestStreamFollowsRotationKeepOne(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.0.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := startFollower(t, p)
	received := f.received
	want, next := "", 0
	for round := 0; round < 8; round++ {
		for range 10 {
			s := fmt.Sprintf("line %d\n", next)
			next++
			w.WriteString(s)
			want += s
		}
		if !waitUntil(5*time.Second, received(next)) {
			t.Fatalf("round %d: the follower did not catch up; got %q", round, f.text())
		}
		// A little more that it has not read yet, then rotate.
		s := fmt.Sprintf("line %d\n", next)
		next++
		w.WriteString(s)
		want += s
		if ok, err := rotateIfLarger(p, 10, 1); !ok || err != nil {
			t.Fatalf("rotate: %v %v", ok, err)
		}
	}
	waitForT(t, 5*time.Second, "every line", received(next))
	if got := f.stop(); got != want {
		t.Fatalf("follower got %q\nwant %q", got, want)
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// follower runs streamLog with follow on a file and collects what it sends.
type follower struct {
	t      *testing.T
	mu     sync.Mutex
	got    bytes.Buffer
	cancel context.CancelFunc
	done   chan error
}

func startFollower(t *testing.T, path string) *follower {
	ctx, cancel := context.WithCancel(t.Context())
	f := &follower{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() {
		f.done <- streamLog(ctx, path, 0, true, func(b []byte) error {
			f.mu.Lock()
			f.got.Write(b)
			f.mu.Unlock()
			return nil
		})
	}()
	return f
}

func (f *follower) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got.String()
}

// received is a condition: at least n lines arrived.
func (f *follower) received(n int) func() bool {
	return func() bool { return strings.Count(f.text(), "\n") >= n }
}

// stop ends the stream and returns everything it sent.
func (f *follower) stop() string {
	f.t.Helper()
	f.cancel()
	if err := <-f.done; err != nil {
		f.t.Fatal(err)
	}
	return f.text()
}
