package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"berth/internal/mustrun"
)

// TestProcUsage reads this process's usage, and names what it could not read.
func TestProcUsage(t *testing.T) {
	u, err := procUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS == 0 || u.PeakRSS < u.RSS {
		t.Errorf("usage %+v: want RSS > 0 and peak >= RSS", u)
	}
	if _, err := procUsage(1 << 30); err == nil || !strings.Contains(err.Error(), "read usage") {
		t.Errorf("usage of a pid that does not exist: error %v, want one saying read usage", err)
	}
}

// TestSetPriorityIdle: in a process of its own (the test binary run
// again), setPriority with idle puts every thread, and the threads started
// after it, under SCHED_IDLE; and the probe's -nice 0 puts them back under
// the normal policy, as the probe does when its parent runs idle.
func TestSetPriorityIdle(t *testing.T) {
	if os.Getenv("SIM_TEST_SET_PRIORITY") == "1" {
		if err := setPriority(0, true); err != nil {
			fmt.Println("error:", err)
			return
		}
		done := make(chan struct{})
		go func() { runtime.LockOSThread(); fmt.Println("idle", threadPolicies()); close(done) }()
		<-done
		if err := setPriority(0, false); err != nil {
			fmt.Println("back:", err)
			return
		}
		fmt.Println("normal", threadPolicies())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSetPriorityIdle$")
	cmd.Env = append(os.Environ(), "SIM_TEST_SET_PRIORITY=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := map[string]string{}
	for l := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			lines[k] = v
		}
	}
	if e, ok := lines["error:"]; ok {
		t.Fatalf("setPriority: %s", e)
	}
	if got := lines["idle"]; got != "5" {
		t.Errorf("policies of the threads after setPriority(0, true): %q, want all 5 (SCHED_IDLE)\n%s", got, out)
	}
	if e, ok := lines["back:"]; ok && os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "setting SCHED_IDLE works; going back to the normal policy needs root here: %s", e)
	}
	if got := lines["normal"]; got != "0" {
		t.Errorf("policies of the threads after setPriority(0, false): %q, want all 0 (SCHED_NORMAL)\n%s", got, out)
	}
}

// threadPolicies lists the distinct scheduling policies of this process's
// threads (field 41 of /proc/self/task/TID/stat), comma-separated.
func threadPolicies() string {
	tasks, _ := os.ReadDir("/proc/self/task")
	seen := map[string]bool{}
	var out []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) > 38 && !seen[fields[38]] {
			seen[fields[38]] = true
			out = append(out, fields[38])
		}
	}
	return strings.Join(out, ",")
}
