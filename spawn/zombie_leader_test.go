package spawn

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const mainExitsFirst = `#include <pthread.h>
#include <unistd.h>
static void *worker(void *a) { (void)a; sleep(600); return 0; }
int main(void) { pthread_t t; pthread_create(&t, 0, worker, 0); pthread_exit(0); }
`

// TestMainThreadExitedFirst: a process whose main thread has exited while
// another thread still runs (and holds its sockets) shows as a zombie in
// /proc/<pid>/stat, with no environment under its pid. It used to count as
// gone, so a stop on the process-group path released the child's ports
// while they were still held (found under load by the busy-ports run of
// TestPortKeptAfterKill9/pgroup). It is alive, and carries its marks, until
// its last thread ends.
func TestMainThreadExitedFirst(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build a program whose main thread exits first")
	}
	dir := t.TempDir()
	src, prog := filepath.Join(dir, "m.c"), filepath.Join(dir, "m")
	os.WriteFile(src, []byte(mainExitsFirst), 0o600)
	if out, err := exec.Command(cc, "-pthread", "-o", prog, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v %s", err, out)
	}
	cmd := exec.Command(prog)
	cmd.Env = []string{"BERTH_ALLOC=zombie-leader-test"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := readProc(pid)
		if err == nil && st.state == 'Z' && len(otherThreads(pid)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the main thread of %d never exited (stat %+v, %v)", pid, st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling /proc, bounded by the deadline
	}
	st, _ := readProc(pid)
	if gone(pid, st) {
		t.Error("a process with a live thread counts as gone")
	}
	if !hasMarks(pid, []string{"BERTH_ALLOC=zombie-leader-test"}) {
		t.Error("its marks are not found through its live thread")
	}
	var seen []int
	eachProc(func(p int, _ procStat) { seen = append(seen, p) })
	if !slices.Contains(seen, pid) {
		t.Error("eachProc skips it")
	}

	cmd.Process.Kill()
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, err := readProc(pid)
		if err != nil || gone(pid, st) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still not gone 10 s after SIGKILL")
		}
		time.Sleep(5 * time.Millisecond) // polling /proc, bounded by the deadline
	}
	cmd.Wait()
}

const clearsEnviron = `#include <string.h>
#include <unistd.h>
extern char **environ;
int main(void) {
	usleep(200000);
	for (char **e = environ; *e; e++) memset(*e, 0, strlen(*e));
	sleep(600);
}
`

// TestProvenStaysMember: a process once found with the child's marks stays
// the child's while it lives, even when its environment can no longer be
// read (a process that is exiting has lost its memory but is not a zombie
// yet, and still holds its sockets): a sweep used to return while such a
// process still ran (TestRuntimeDirDeletedThenCrash/pgroup, once under
// load). Simulated by a program that wipes its environment strings.
func TestProvenStaysMember(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	src, prog := filepath.Join(dir, "e.c"), filepath.Join(dir, "e")
	os.WriteFile(src, []byte(clearsEnviron), 0o600)
	if out, err := exec.Command(cc, "-o", prog, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v %s", err, out)
	}
	mark := "BERTH_ALLOC=proven-test"
	cmd := exec.Command(prog)
	cmd.Env = []string{mark}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	has := func(ms []member) bool {
		return slices.ContainsFunc(ms, func(m member) bool { return m.pid == pid })
	}
	g := &groupTracker{marks: []string{mark}}
	deadline := time.Now().Add(10 * time.Second)
	for !has(g.members(true)) {
		if time.Now().After(deadline) {
			t.Fatal("the marked process was never found")
		}
		time.Sleep(5 * time.Millisecond) // polling /proc, bounded by the deadline
	}
	for hasMarks(pid, []string{mark}) {
		if time.Now().After(deadline) {
			t.Fatal("the program never wiped its environment")
		}
		time.Sleep(5 * time.Millisecond) // polling /proc, bounded by the deadline
	}
	if !has(g.members(false)) {
		t.Error("a process found with the marks is no longer a member once its environment is gone")
	}
	if has((&groupTracker{marks: []string{mark}}).members(false)) {
		t.Error("a tracker that never saw the marks counts it: the test proves nothing")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if has(g.members(false)) {
		t.Error("still a member once reaped")
	}
}
