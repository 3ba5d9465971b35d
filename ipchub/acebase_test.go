package ipchub_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/ipchub"
)

// requireAceBase is the environment variable that turns the skips of
// TestAceBase into failures.
const requireAceBase = "BERTH_E2E_ACEBASE"

// skipAceBase skips the test, or fails it when BERTH_E2E_ACEBASE=require.
func skipAceBase(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireAceBase) == "require" {
		t.Fatalf("%s (%s=require)", msg, requireAceBase)
	}
	t.Skipf("%s; set %s=require to fail instead", msg, requireAceBase)
}

// TestAceBase runs two unmodified AceBase processes (the npm package, in
// Node) on one database with the hub as their IPC server: what one writes,
// the other sees.
func TestAceBase(t *testing.T) {
	if testing.Short() {
		skipAceBase(t, "end-to-end test with npm and Node skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skipAceBase(t, "node not found: %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skipAceBase(t, "npm not found: %v", err)
	}
	mods := t.TempDir()
	install := exec.CommandContext(t.Context(), npm, "install", "--no-audit", "--no-fund", "--prefix", mods, "acebase@1.29.13", "ws@8.23.1") // as examples/acebase/package.json
	if out, err := install.CombinedOutput(); err != nil {
		skipAceBase(t, "npm install acebase ws (is the registry reachable?): %v\n%s", err, out)
	}
	script, err := filepath.Abs("testdata/acebase-peer.js")
	if err != nil {
		t.Fatal(err)
	}

	hub := ipchub.NewServer(ipchub.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hub}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
		<-served
	})
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)

	dbdir := t.TempDir()
	master := startAceBase(t, node, script, mods, dbdir, port, "master")
	master.waitFor(t, "ready")
	worker := startAceBase(t, node, script, mods, dbdir, port, "worker")
	worker.waitFor(t, "ready")

	// AceBase says ready before its hub connection has joined the group;
	// a subscribe sent before the worker joined would not reach it.
	deadline := time.Now().Add(20 * time.Second)
	for g := hub.Snapshot(); len(g) != 1 || len(g[0].Peers) != 2; g = hub.Snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("the hub's groups %+v, want both peers in one", g)
		}
		time.Sleep(20 * time.Millisecond) // polling the hub, bounded by the deadline
	}

	// Each learns the other's subscription from a subscribe frame, which
	// AceBase prints when it receives it.
	master.do(t, "watch")
	worker.waitFor(t, `"type":"subscribe","from":"[master]"`)
	worker.do(t, "watch")
	master.waitFor(t, `"type":"subscribe"`)

	worker.do(t, "write from-worker")
	worker.waitFor(t, "wrote from-worker")
	master.waitFor(t, "seen from-worker")
	master.do(t, "write from-master")
	worker.waitFor(t, "seen from-master")

	g := hub.Snapshot()
	// AceBase 1.29 names its group after the database and its data file:
	// "e2e_data".
	if len(g) != 1 || g[0].Name != "e2e_data" || len(g[0].Peers) != 2 || g[0].Peers[0].ID != "[master]" {
		t.Errorf("snapshot %+v, want group e2e_data with [master] and the worker", g)
	}
}

// aceBase is one Node process running testdata/acebase-peer.js.
type aceBase struct {
	role  string
	stdin io.WriteCloser
	lines chan string // its output, line by line; closed at exit
}

func startAceBase(t *testing.T, node, script, mods, dbdir, port, role string) *aceBase {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, script, dbdir, port, role)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(mods, "node_modules"))
	cmd.Dir = mods
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &aceBase{role: role, stdin: stdin, lines: make(chan string)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(a.lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case a.lines <- sc.Text():
			case <-ctx.Done(): // the test is over: drain
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		cancel()
		cmd.Wait()
		pw.Close()
		<-done
	})
	return a
}

// waitFor reads the process's lines until one contains want, for at most
// testTimeout.
func (a *aceBase) waitFor(t *testing.T, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	for {
		select {
		case line, ok := <-a.lines:
			if !ok {
				t.Fatalf("%s exited before %q", a.role, want)
			}
			if strings.Contains(line, want) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s: no %q in %s", a.role, want, testTimeout)
		}
	}
}

// do sends the process a command line.
func (a *aceBase) do(t *testing.T, cmd string) {
	t.Helper()
	if _, err := fmt.Fprintln(a.stdin, cmd); err != nil {
		t.Fatalf("%s: %v", a.role, err)
	}
}
