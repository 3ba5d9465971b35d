package leakcheck

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// parkedHere blocks until stop is closed; its name marks the stack.
func parkedHere(stop chan struct{}) { <-stop }

func TestRunningSeesAGoroutine(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { parkedHere(stop); close(done) }()
	left := Wait(50*time.Millisecond, "testing.tRunner", "testing.(*T).Run")
	if !anyMentions(left, "leakcheck.parkedHere") {
		t.Fatalf("a parked goroutine was not reported; reported:\n%s", strings.Join(left, "\n\n"))
	}
	if left := Running("leakcheck.parkedHere", "testing.tRunner", "testing.(*T).Run"); anyMentions(left, "leakcheck.parkedHere") {
		t.Fatalf("an ignored goroutine was reported:\n%s", strings.Join(left, "\n\n"))
	}
	close(stop)
	<-done
	if left := Wait(5*time.Second, "testing.tRunner", "testing.(*T).Run"); anyMentions(left, "leakcheck.parkedHere") {
		t.Fatalf("an ended goroutine was reported:\n%s", strings.Join(left, "\n\n"))
	}
}

// TestSignalWatcherIsNotALeak: signal.Notify starts a goroutine that lives
// as long as the process; it is not counted.
func TestSignalWatcherIsNotALeak(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	defer signal.Stop(c)
	if left := Running("testing.tRunner", "testing.(*T).Run"); anyMentions(left, "os/signal.") {
		t.Fatalf("the signal watcher was reported:\n%s", strings.Join(left, "\n\n"))
	}
}

func anyMentions(stacks []string, fn string) bool {
	for _, s := range stacks {
		if strings.Contains(s, fn) {
			return true
		}
	}
	return false
}

// TestRunFailsOnLeak runs this test binary again with one test that
// leaves a goroutine behind: it exits 1 and names the goroutine's stack.
func TestRunFailsOnLeak(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLeaky$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), leakyEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("leaky run: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"leakcheck: 1 goroutine(s) still running", "leakcheck.parkedHere", "--- PASS: TestLeaky"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("leaky run's output lacks %q:\n%s", want, out)
		}
	}
}

const leakyEnv = "LEAKCHECK_LEAKY"

// TestLeaky passes and leaves a goroutine behind; only TestRunFailsOnLeak
// runs it.
func TestLeaky(t *testing.T) {
	if os.Getenv(leakyEnv) == "" {
		t.Skip("run by TestRunFailsOnLeak")
	}
	go parkedHere(make(chan struct{}))
}

func TestMain(m *testing.M) {
	if os.Getenv(leakyEnv) != "" {
		os.Exit(run(m, 100*time.Millisecond, nil))
	}
	os.Exit(Run(m))
}
