package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/child"
	"berth/internal/freeports"
	"berth/lan"
	"berth/master"
	"berth/needs"
)

// runBerthChild is a child of a real master: it serves each of its ports
// (writing its instance name to each connection), writes its pid as it
// sees it to $SANDBOX_DATA/<instance>, says ready and beats on its pipe,
// and exits 0 when asked to stop.
func runBerthChild() int {
	env, err := child.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for _, port := range env.Ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(env.Host, strconv.Itoa(port)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		go func() { // ends with the process
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, env.Instance)
				c.Close()
			}
		}()
	}
	pid := []byte("pid=" + strconv.Itoa(os.Getpid()) + "\n")
	if err := os.WriteFile(filepath.Join(os.Getenv("SANDBOX_DATA"), env.Instance), pid, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	c, err := child.Open(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 5
	}
	c.Ready()
	c.StartHeartbeat(context.Background(), 100*time.Millisecond, nil)
	<-c.Stop()
	return 0
}

// TestUnderAMaster runs sandboxed children under a real master and
// lanmanager (in-process): the children say ready and beat on their pipes
// (in the master's runtime directory, under the host's /tmp, which the
// sandbox hides), serve their leased ports to the host, write only to
// their bind (where they see themselves as pid 2); they outlive a master
// that leaves, and the next master adopts them and hears from them on
// the sockets it made anew; scaling down stops them.
func TestUnderAMaster(t *testing.T) {
	requireSandbox(t)
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t),
		BidWindow: time.Second, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	lc := &lan.Client{Addr: srv.Addr()}

	data := t.TempDir()
	cfg := master.DefaultConfig()
	cfg.LanManagerAddress, cfg.Name, cfg.AdvertiseAddress = srv.Addr(), "m1", "127.0.0.1"
	cfg.PortRangeSize = 10
	base := freeports.Block(t, 2*cfg.PortRangeSize)
	cfg.PortRangeStart = map[needs.Protocol]int{needs.HTTP: base, needs.TCP: base + cfg.PortRangeSize}
	rt, err := os.MkdirTemp("", "sb") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	cfg.RuntimeDirectory = filepath.Join(rt, "rt")
	opts := master.Options{Config: cfg, Logger: testLogger(t), StopGrace: 5 * time.Second,
		Driver:  Driver{Options: Options{Bind: []string{data}}},
		Environ: []string{"PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0", helperEnv + "=berth-child", "SANDBOX_DATA=" + data}}
	a, err := master.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	waitFor(t, "the master to link", a.Linked)

	exe, _ := os.Executable()
	n := 2
	if _, err := lc.AddNeed(t.Context(), lan.NeedSpec{Name: "svc", Command: []string{exe}, Instances: &n,
		Protocols: []needs.Protocol{needs.HTTP, needs.TCP}}); err != nil {
		t.Fatal(err)
	}
	readyAndBeating := func(a *master.Agent) func() bool {
		return func() bool {
			kids := a.Children()
			for _, k := range kids {
				if !k.Ready || k.Stats == nil {
					return false
				}
			}
			return len(kids) == n
		}
	}
	waitFor(t, "2 sandboxed children ready and beating on their pipes", readyAndBeating(a))
	kids := a.Children()
	for _, k := range kids {
		if b, err := os.ReadFile(filepath.Join(data, k.Instance)); err != nil || string(b) != "pid=2\n" {
			t.Errorf("%s wrote %q, %v to its bind; want pid=2 (its own pid namespace)", k.Instance, b, err)
		}
		for proto, port := range k.Ports {
			if got := dialLine(t, port); got != k.Instance {
				t.Errorf("%s's %s port %d answered %q", k.Instance, proto, port, got)
			}
		}
	}

	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		if syscall.Kill(k.PID, 0) != nil {
			t.Fatalf("%s (bwrap, pid %d) did not outlive its master", k.Instance, k.PID)
		}
	}
	b, err := master.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for _, k := range b.Children() {
		if !k.Adopted {
			t.Errorf("%s not adopted: %+v", k.Instance, k)
		}
	}
	// Stats are reset on adoption: only a reconnected child's beat sets them.
	waitFor(t, "the adopted children to redial their pipes and beat", readyAndBeating(b))

	if _, err := lc.Scale(t.Context(), "svc", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the children to stop", func() bool { return len(b.Children()) == 0 })
	for _, k := range kids {
		waitFor(t, k.Instance+" gone", func() bool { return syscall.Kill(k.PID, 0) != nil })
	}
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialLine reads the first line a loopback port answers with.
func dialLine(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err.Error()
	}
	return strings.TrimSuffix(line, "\n")
}
