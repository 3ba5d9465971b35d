package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogsCLI reads a child's output with `lanmanager logs`, through the
// lanmanager and the master's link: the whole file, --tail, and --follow
// seeing a line written after it started; bad instance names are refused.
func TestLogsCLI(t *testing.T) {
	l := startLan(t, "tok")
	startMaster(t, l, "m1", 5)
	goFile := filepath.Join(t.TempDir(), "go")
	script := `echo "first from $BERTH_INSTANCE"; echo second; while [ ! -e "$GO_FILE" ]; do sleep 0.05; done; echo "after follow"; exec sleep 600`
	l.mustCLI(t, "need", "add", "talker", "--env", "GO_FILE="+goFile, "--", "/bin/sh", "-c", script)
	waitFor(t, 30*time.Second, "talker.0 to run", func() bool { return len(l.running(t, "talker")) == 1 })

	out := l.mustCLI(t, "logs", "talker.0")
	if out != "first from talker.0\nsecond\n" {
		t.Errorf("logs talker.0 = %q", out)
	}
	if out := l.mustCLI(t, "logs", "talker.0", "--tail", "1"); out != "second\n" {
		t.Errorf("logs talker.0 --tail 1 = %q", out)
	}

	// Follow, then let the child write one more line.
	cmd := exec.Command(bin.lanmanager, "logs", "talker.0", "-f", "--addr", "http://"+l.addr, "--token", l.token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case s := <-lines:
			return s
		case <-time.After(20 * time.Second):
			t.Fatal("logs -f printed nothing for 20s")
			return ""
		}
	}
	if s := next(); s != "first from talker.0" {
		t.Fatalf("logs -f began with %q", s)
	}
	next()
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := next(); s != "after follow" {
		t.Fatalf("logs -f then printed %q", s)
	}

	for _, bad := range [][]string{{"logs"}, {"logs", "talker"}, {"logs", "nope.0"}, {"logs", "talker.0", "--tail", "-3"}} {
		if out, err := l.cli(t, bad...); err == nil {
			t.Errorf("lanmanager %s succeeded: %q", strings.Join(bad, " "), out)
		}
	}
}
