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
