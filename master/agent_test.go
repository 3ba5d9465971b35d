package master_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"berth/child"
	"berth/internal/freeports"
	"berth/internal/leakcheck"
	"berth/lan"
	"berth/master"
	"berth/needs"
	"berth/pipes"
)

// TestMain lets the test binary double as a child: with AGENT_TEST_CHILD
// set it serves its declared ports (writing its instance name to each
// connection and holding it until the client closes), says ready and waits for a stop. After
// the tests it fails if they left goroutines running.
func TestMain(m *testing.M) {
	if os.Getenv("AGENT_TEST_CHILD") != "" {
		os.Exit(runChild())
	}
	os.Exit(leakcheck.Run(m))
}

func runChild() int {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "legacy-client": // upstream_test.go
			return runLegacyClient(os.Args[2:])
		case "mesh-child":
			return runMeshChild()
		}
	}
	env, err := child.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, port := range env.Ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(env.Host, fmt.Sprint(port)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		if os.Getenv("AGENT_TEST_HTTP") != "" { // an HTTP service, for the gateway tests
			go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s %s", env.Instance, r.URL.Path)
			}))
			continue
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				// Say who answered, for the ingress tests (ingress_test.go),
				// and hold the connection until the client closes it.
				go func() {
					defer c.Close()
					c.Write([]byte(env.Instance + "\n"))
					io.Copy(io.Discard, c)
				}()
			}
		}()
	}
	if os.Getenv("AGENT_TEST_BURN") == env.Instance { // a busy instance, for TestIngressResource
		go func() {
			for x := 0; ; x++ {
				_ = x * x
			}
		}()
	}
	if out := os.Getenv("AGENT_TEST_BAD_VERSION"); out != "" { // TestChildPipeUnknownVersion
		os.WriteFile(filepath.Join(out, env.Instance), []byte(sendUnknownVersion(env.Pipe)), 0o600)
	}
	c, err := child.Open(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	c.Ready()
	c.StartHeartbeat(context.Background(), 100*time.Millisecond, nil)
	<-c.Stop()
	return 0
}

// newPair starts an in-process lanmanager and one master whose children are
// this test binary.
func newPair(t *testing.T) (*lan.Server, *lan.Client, *master.Agent) {
	srv, c, a, _ := newPairWith(t, nil)
	return srv, c, a
}

// newPairWith is newPair with the master's config edited first; it also
// returns the config, for a test that opens the master again.
func newPairWith(t *testing.T, edit func(*master.Config)) (*lan.Server, *lan.Client, *master.Agent, master.Config) {
	t.Helper()
	srv, c := newLan(t)
	cfg := testConfig(t, srv.Addr())
	if edit != nil {
		edit(&cfg)
	}
	a := openAgent(t, cfg)
	waitFor(t, 10*time.Second, "the master to link", a.Linked)
	return srv, c, a, cfg
}

// newLan starts an in-process lanmanager.
func newLan(t *testing.T) (*lan.Server, *lan.Client) {
	t.Helper()
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t),
		BidWindow: time.Second, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, &lan.Client{Addr: srv.Addr()}
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// testConfig is a master config for a lanmanager at lanAddr, with http
// and tcp ranges of 10 ports picked at run time, a short runtime directory
// (socket paths) and this test binary as the children.
func testConfig(t *testing.T, lanAddr string) master.Config {
	t.Helper()
	cfg := master.DefaultConfig()
	cfg.LanManagerAddress = lanAddr
	cfg.Name = "m1"
	cfg.AdvertiseAddress = "127.0.0.1"
	cfg.PortRangeSize = 10
	base := freeports.Block(t, 2*cfg.PortRangeSize)
	cfg.PortRangeStart = map[needs.Protocol]int{needs.HTTP: base, needs.TCP: base + cfg.PortRangeSize}
	dir, err := os.MkdirTemp("", "ag") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.RuntimeDirectory = filepath.Join(dir, "rt")
	t.Setenv("AGENT_TEST_CHILD", "1") // inherited by the children
	return cfg
}

// openAgent opens a master on cfg; Cleanup closes it.
func openAgent(t *testing.T, cfg master.Config) *master.Agent {
	t.Helper()
	a, err := master.Open(t.Context(), master.Options{Config: cfg, Logger: testLogger(t), StopGrace: 2 * time.Second, Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func running(t *testing.T, c *lan.Client, need string) int {
	st, err := c.Need(t.Context(), need)
	if err != nil {
		return -1
	}
	return st.Running
}

// TestAgentRunsAndStops: granted instances run with leased ports and a
// pipe, show in Children and on the control socket, and scale-down stops
// them and releases their ports.
func TestAgentRunsAndStops(t *testing.T) {
	_, c, a := newPair(t)
	exe, _ := os.Executable()
	n := 3
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.HTTP, needs.TCP}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "3 running", func() bool { return running(t, c, "svc") == 3 })
	kids := a.Children()
	if len(kids) != 3 {
		t.Fatalf("Children = %d, want 3", len(kids))
	}
	waitFor(t, 10*time.Second, "every child to say ready on its pipe", func() bool {
		for _, k := range a.Children() {
			if !k.Ready {
				return false
			}
		}
		return true
	})
	if got := len(a.Office().Leases()); got != 6 {
		t.Errorf("%d leases for 3 children with 2 ports each", got)
	}
	for _, k := range kids {
		fi, err := os.Stat(k.Pipe)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("pipe %s: %v %v, want a 0600 socket", k.Pipe, fi.Mode(), err)
		}
		if d, err := os.Stat(filepath.Dir(k.Pipe)); err != nil || d.Mode().Perm() != 0o700 {
			t.Errorf("pipe dir of %s: %v, want 0700", k.Pipe, err)
		}
		if len(k.Pipe) > pipes.MaxSocketPath {
			t.Errorf("pipe path %d bytes", len(k.Pipe))
		}
		// Alone in a directory of its own, next to master.sock.
		if ents, err := os.ReadDir(filepath.Dir(k.Pipe)); err != nil || len(ents) != 1 || filepath.Base(k.Pipe) != "pipe" {
			t.Errorf("pipe %s: its directory holds %v (%v), want it alone, named pipe", k.Pipe, ents, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(k.Pipe)), "master.sock")); err != nil {
			t.Errorf("pipe %s: no master.sock two levels up: %v", k.Pipe, err)
		}
	}

	// The control socket answers ps with the same list.
	sock, err := master.ControlSocket(filepath.Dir(filepath.Dir(kids[0].Log)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pipes.Dial(t.Context(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SendBody(pipes.TypePS, 7, nil); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.Recv()
	if err != nil || msg.ID != 7 {
		t.Fatalf("ps answer %+v, %v", msg, err)
	}
	var list []pipes.ChildInfo
	if err := msg.Decode(&list); err != nil || len(list) != 3 {
		t.Fatalf("ps list %d, %v", len(list), err)
	}

	// A request in an envelope version the master does not speak is
	// answered "unsupported" with its id, and that connection is closed;
	// the control socket goes on answering others.
	if err := conn.Send(&pipes.Msg{V: pipes.Version + 1, Type: pipes.TypePS, ID: 8}); err != nil {
		t.Fatal(err)
	}
	if msg, err := conn.Recv(); err != nil || msg.Type != pipes.TypeError || msg.ID != 8 || msg.Error == nil || msg.Error.Code != pipes.CodeUnsupported {
		t.Fatalf("answer to a version %d request: %+v, %v; want an unsupported error with id 8", pipes.Version+1, msg, err)
	}
	if msg, err := conn.Recv(); err == nil {
		t.Fatalf("after the unsupported version the connection is still read: %+v", msg)
	}
	if got := askControl[[]pipes.ChildInfo](t, filepath.Dir(filepath.Dir(kids[0].Log)), pipes.TypePS); len(got) != 3 {
		t.Errorf("ps on a new connection after the unsupported one: %d children, want 3", len(got))
	}

	if _, err := c.Scale(t.Context(), "svc", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "1 child left", func() bool { return len(a.Children()) == 1 })
	waitFor(t, 5*time.Second, "leases of the stopped children released", func() bool { return len(a.Office().Leases()) == 2 })
	for _, k := range kids {
		if k.Instance == "svc.0" {
			continue
		}
		waitFor(t, 5*time.Second, k.Instance+" gone", func() bool { return syscall.Kill(k.PID, 0) != nil || zombie(k.PID) })
		if _, err := os.Stat(k.Pipe); err == nil {
			t.Errorf("pipe %s of a stopped child still exists", k.Pipe)
		}
		if _, err := os.Stat(filepath.Dir(k.Pipe)); err == nil {
			t.Errorf("pipe directory of the stopped child %s still exists", k.Instance)
		}
	}
}

// TestAgentCloseStopsChildren: Close stops every child and releases every
// lease; a second Close is harmless.
func TestAgentCloseStopsChildren(t *testing.T) {
	_, c, a := newPair(t)
	exe, _ := os.Executable()
	n := 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.HTTP}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "2 running", func() bool { return running(t, c, "svc") == 2 })
	kids := a.Children()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, k := range kids {
		if syscall.Kill(k.PID, 0) == nil && !zombie(k.PID) {
			t.Errorf("child %s (pid %d) survived Close", k.Instance, k.PID)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] == 'Z'
		}
	}
	return false
}

// sendUnknownVersion dials a child's pipe as a child of a newer berth
// would, sends child.ready in the next envelope version, and says what the
// master did.
func sendUnknownVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pipes.Dial(ctx, path)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	if err := conn.Send(&pipes.Msg{V: pipes.Version + 1, Type: pipes.TypeChildReady, ID: 5}); err != nil {
		return "send: " + err.Error()
	}
	m, err := conn.Recv()
	if err != nil {
		return "no answer: " + err.Error()
	}
	answer := fmt.Sprintf("%s id %d", m.Type, m.ID)
	if m.Error != nil {
		answer += " " + string(m.Error.Code)
	}
	if m, err := conn.Recv(); err == nil {
		return answer + "; then read on: " + m.Type
	}
	return answer + "; closed"
}

// TestChildPipeUnknownVersion: a child that speaks an envelope version
// the master does not is answered "unsupported" with its request's id,
// and that connection is closed; the child is left running, the pipe goes
// on accepting, and a child that then speaks the master's version is
// heard (its ready makes the instance run).
func TestChildPipeUnknownVersion(t *testing.T) {
	_, c, _ := newPair(t)
	out := t.TempDir()
	exe, _ := os.Executable()
	n := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "newer", Command: []string{exe}, Instances: &n,
		Env: map[string]string{"AGENT_TEST_BAD_VERSION": out}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the instance running", func() bool { return running(t, c, "newer") == 1 })
	// The child writes what it saw once its master has answered and
	// closed the pipe, which may come after the lanmanager counts it
	// running (CI saw the file missing then).
	var b []byte
	waitFor(t, 10*time.Second, "the child to write what it saw", func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(out, "newer.0"))
		return err == nil && len(b) > 0 // created, then written in one write(2)
	})
	if want := pipes.TypeError + " id 5 " + string(pipes.CodeUnsupported) + "; closed"; string(b) != want {
		t.Errorf("the child of a newer version saw %q, want %q", b, want)
	}
}
