package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// startLan runs an in-process lanmanager for the client commands.
func startLan(t *testing.T) *lan.Server {
	t.Helper()
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	t.Setenv("BERTH_ADDR", srv.Addr()) // the client commands' --addr
	t.Setenv("BERTH_TOKEN", "")
	t.Setenv("BERTH_ANNOUNCE_DIR", t.TempDir()) // never the user's own
	return srv
}

// run runs the CLI with args against srv (startLan points BERTH_ADDR at
// it) and returns its output and error.
func run(t *testing.T, srv *lan.Server, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	err := cliapp.Run(t.Context(), app, append([]string{"lanmanager"}, args...))
	return out.String() + errOut.String(), err
}

// mustRun is run that fails the test on error.
func mustRun(t *testing.T, srv *lan.Server, args ...string) string {
	t.Helper()
	out, err := run(t, srv, args...)
	if err != nil {
		t.Fatalf("lanmanager %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fakeMaster connects to srv as master name and plays it: it bids for
// every offer, answers every grant with a started report on a real
// listener (or, when failing, with an exit code 1), and confirms every stop
// with an exit.
type fakeMaster struct {
	mu   sync.Mutex // Protects following.
	fail bool
}

func runFakeMaster(t *testing.T, srv *lan.Server, id, name string) *fakeMaster {
	t.Helper()
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	fm := &fakeMaster{}
	var wg sync.WaitGroup
	t.Cleanup(func() { conn.Close(); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	if err := conn.SendBody(pipes.TypeHello, 0, &pipes.Hello{ID: id, Name: name, Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		for {
			msg, err := conn.Recv()
			if err != nil {
				return
			}
			switch msg.Type {
			case pipes.TypePing:
				conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID})
			case pipes.TypeOffer:
				var o pipes.Offer
				msg.Decode(&o)
				conn.SendBody(pipes.TypeBid, 0, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
			case pipes.TypeGrant:
				var g pipes.Grant
				msg.Decode(&g)
				fm.mu.Lock()
				fail := fm.fail
				fm.mu.Unlock()
				if fail {
					conn.SendBody(pipes.TypeExited, 0, &pipes.Exited{Alloc: g.Alloc, Instance: g.Instance, Code: 1})
					continue
				}
				conn.SendBody(pipes.TypeStarted, 0, &pipes.Started{Alloc: g.Alloc, Instance: g.Instance, PID: os.Getpid(),
					Address: "127.0.0.1", Ports: map[needs.Protocol]int{needs.HTTP: port}, StartedAt: time.Now()})
			case pipes.TypeStop:
				var s pipes.Stop
				msg.Decode(&s)
				conn.SendBody(pipes.TypeExited, 0, &pipes.Exited{Alloc: s.Alloc, Code: -1, Signal: "SIGTERM", Requested: true})
			}
		}
	})
	return fm
}

func (fm *fakeMaster) setFail(v bool) {
	fm.mu.Lock()
	fm.fail = v
	fm.mu.Unlock()
}

// waitFor polls cond until it holds, failing after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNeedAddRestartFlags(t *testing.T) {
	srv := startLan(t)
	out := mustRun(t, srv, "need", "add", "web", "--protocols", "tcp", "--restart-local", "2", "--restart-delay", "1s",
		"--restart-max-delay", "1m", "--restart-factor", "1.5", "--restart-reset-after", "10m", "--socket-activation", "--json", "--", "x")
	var st needs.NeedStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("need add --json: %v\n%s", err, out)
	}
	want := needs.RestartPolicy{LocalAttempts: 2, Delay: needs.Duration(time.Second), MaxDelay: needs.Duration(time.Minute),
		Factor: 1.5, ResetAfter: needs.Duration(10 * time.Minute)}
	if st.Restart == nil || *st.Restart != want || !st.SocketActivation {
		t.Errorf("declared restart %+v, socket activation %v; want %+v and true", st.Restart, st.SocketActivation, want)
	}
	show := mustRun(t, srv, "need", "show", "web")
	for _, s := range []string{"back-off 1s ×1.5 up to 1m0s", "reset after 10m0s", "2 failures in a row are retried on the same master",
		"LISTEN_FDS", "NEXT ATTEMPT", "LAST EXIT", "RESTARTS"} {
		if !strings.Contains(show, s) {
			t.Errorf("need show does not say %q:\n%s", s, show)
		}
	}
	// Without the flags, the policy is the default and says so.
	mustRun(t, srv, "need", "add", "plain", "--", "x")
	if show := mustRun(t, srv, "need", "show", "plain"); !strings.Contains(show, "back-off 100ms ×2 up to 30s") || !strings.Contains(show, "(defaults)") {
		t.Errorf("need show of a need without a policy:\n%s", show)
	}
	var plain needs.NeedStatus
	if err := json.Unmarshal([]byte(mustRun(t, srv, "need", "show", "plain", "--json")), &plain); err != nil || plain.Restart != nil || plain.SocketActivation {
		t.Errorf("plain need = %+v, %v; want no policy, no socket activation", plain.Need, err)
	}
}

func TestNeedAddBadRestartFlags(t *testing.T) {
	srv := startLan(t)
	for _, tt := range []struct {
		args   []string
		wantIn string
	}{
		{[]string{"--restart-delay", "soon"}, "--restart-delay"},
		{[]string{"--restart-max-delay", "5"}, "--restart-max-delay"},
		{[]string{"--restart-reset-after", "-1s"}, "--restart-reset-after"},
		{[]string{"--restart-factor", "fast"}, "--restart-factor"},
		{[]string{"--restart-factor", "0.5"}, "--restart-factor"},
		{[]string{"--restart-factor", "NaN"}, "--restart-factor"},
		{[]string{"--restart-local", "-1"}, "--restart-local"},
		{[]string{"--restart-local", "many"}, "restart-local"},
		{[]string{"--restart-delay", "1m", "--restart-max-delay", "1s"}, "--restart-max-delay"},
		{[]string{"--restart-delay", "25h"}, "--restart-delay"},
		{[]string{"--socket-activation"}, "--socket-activation"},
	} {
		args := append([]string{"need", "add", "web"}, tt.args...)
		args = append(args, "--", "x")
		out, err := run(t, srv, args...)
		if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
			t.Errorf("need add %v = %v (%s), want an error naming %s", tt.args, err, out, tt.wantIn)
		}
		var ec cli.ExitCoder
		if err != nil && (!asExitCoder(err, &ec) || ec.ExitCode() != 2) && !strings.Contains(err.Error(), "invalid value") {
			t.Errorf("need add %v: error %v is not a usage error (exit 2)", tt.args, err)
		}
	}
	if out := mustRun(t, srv, "need", "ls"); strings.Contains(out, "web") {
		t.Errorf("a refused need was declared:\n%s", out)
	}
}

func asExitCoder(err error, ec *cli.ExitCoder) bool {
	e, ok := err.(cli.ExitCoder)
	*ec = e
	return ok
}

func TestNeedRestartCommand(t *testing.T) {
	srv := startLan(t)
	if _, err := run(t, srv, "need", "restart", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("need restart nope = %v, want not found", err)
	}
	if _, err := run(t, srv, "need", "restart"); err == nil || !strings.Contains(err.Error(), "NAME") {
		t.Errorf("need restart without NAME = %v, want a usage error", err)
	}
	mustRun(t, srv, "need", "add", "web", "--protocols", "http", "--restart-delay", "1h", "--", "x")
	if out := mustRun(t, srv, "need", "restart", "web"); !strings.Contains(out, "no instance was backing off") {
		t.Errorf("need restart with nothing backing off:\n%s", out)
	}
	fm := runFakeMaster(t, srv, "0123456789abcdef", "m1")
	fm.setFail(true)
	cl := &lan.Client{Addr: srv.Addr()}
	waitFor(t, "web.0 backing off", func() bool {
		st, err := cl.Need(t.Context(), "web")
		return err == nil && st.InstanceList[0].State == needs.Backoff
	})
	show := mustRun(t, srv, "need", "show", "web")
	if !strings.Contains(show, "backoff") || !strings.Contains(show, "exit code 1") || !strings.Contains(show, "in 59m") {
		t.Errorf("need show of a backed-off instance does not show its state, last exit and next attempt:\n%s", show)
	}
	fm.setFail(false)
	if out := mustRun(t, srv, "need", "restart", "web"); !strings.Contains(out, "retrying web.0 now") {
		t.Errorf("need restart:\n%s", out)
	}
	waitFor(t, "web.0 running", func() bool { st, err := cl.Need(t.Context(), "web"); return err == nil && st.Running == 1 })
	out := mustRun(t, srv, "need", "restart", "web", "--json")
	var st needs.NeedStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Name != "web" || st.Running != 1 ||
		st.InstanceList[0].Restarts != 1 || st.InstanceList[0].Failures != 0 {
		t.Errorf("need restart --json = %+v, %v; want web running, 1 restart, failures reset", st, err)
	}
}

func TestMasterDrainCommands(t *testing.T) {
	srv := startLan(t)
	cl := &lan.Client{Addr: srv.Addr()}
	if _, err := run(t, srv, "master", "drain", "nope"); err == nil || !strings.Contains(err.Error(), "never seen") {
		t.Errorf("master drain nope = %v, want not found", err)
	}
	if _, err := run(t, srv, "master", "undrain", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("master undrain nope = %v, want not found", err)
	}
	if _, err := run(t, srv, "master", "drain", "ma", "--timeout", "1s"); err == nil || !strings.Contains(err.Error(), "--wait") {
		t.Errorf("master drain --timeout without --wait = %v, want a usage error", err)
	}
	runFakeMaster(t, srv, "0123456789abcdef", "ma")
	mustRun(t, srv, "need", "add", "web", "--instances", "2", "--protocols", "http", "--", "x")
	waitFor(t, "2 running on ma", func() bool { st, err := cl.Need(t.Context(), "web"); return err == nil && st.Running == 2 })

	// Nowhere to go: --wait gives up and says why.
	out, err := run(t, srv, "master", "drain", "ma", "--wait", "--timeout", "500ms")
	if err == nil || !strings.Contains(err.Error(), "still holds 2 instance(s)") || !strings.Contains(err.Error(), "no other master can take it") {
		t.Errorf("master drain --wait with nowhere to go = %v\n%s", err, out)
	}
	ls := mustRun(t, srv, "master", "ls")
	if !strings.Contains(ls, "connected, draining") || !strings.Contains(ls, "LAST SEEN") {
		t.Errorf("master ls does not show the drain:\n%s", ls)
	}

	runFakeMaster(t, srv, "fedcba9876543210", "mb")
	out = mustRun(t, srv, "master", "drain", "ma", "--wait", "--timeout", "20s", "--json")
	var m needs.Master
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &m); err != nil || m.Instances != 0 || !m.Draining {
		t.Errorf("master drain --wait --json = %+v, %v\n%s", m, err, out)
	}
	for _, s := range mustServices(t, cl) {
		if s.Master != "mb" || s.State != needs.Running {
			t.Errorf("after the drain: %s %s on %s, want running on mb", s.Name, s.State, s.Master)
		}
	}
	if out := mustRun(t, srv, "master", "undrain", "ma"); !strings.Contains(out, "undrained") {
		t.Errorf("master undrain:\n%s", out)
	}
	if ls := mustRun(t, srv, "master", "ls", "--json"); strings.Contains(ls, `"draining"`) {
		t.Errorf("master ls --json after undrain still shows a drain:\n%s", ls)
	}
}

func mustServices(t *testing.T, cl *lan.Client) []*needs.Instance {
	t.Helper()
	svcs, err := cl.Services(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return svcs
}

// TestMasterTTLFlags: --master-ttl is validated, and --master-grace still
// sets it.
func TestMasterTTLFlags(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var cfg Config
		app := &cli.App{Name: "x", Flags: cfg.flags(), ExitErrHandler: func(*cli.Context, error) {},
			Action: func(c *cli.Context) error { return cfg.resolve(c) }}
		app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
		err := app.RunContext(context.Background(), append([]string{"x"}, args...))
		return cfg, err
	}
	for _, tt := range []struct {
		args   []string
		want   time.Duration
		wantIn string
	}{
		{nil, 5 * time.Second, ""},
		{[]string{"--master-ttl", "2s"}, 2 * time.Second, ""},
		{[]string{"--master-grace", "3s"}, 3 * time.Second, ""},
		{[]string{"--master-grace", "3s", "--master-ttl", "3s"}, 3 * time.Second, ""},
		{[]string{"--master-grace", "3s", "--master-ttl", "4s"}, 0, "old name"},
		{[]string{"--master-ttl", "50ms"}, 0, "at least 100ms"},
		{[]string{"--master-ttl", "48h"}, 0, "--master-ttl"},
	} {
		cfg, err := parse(tt.args...)
		switch {
		case tt.wantIn != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("%v: %v, want an error mentioning %q", tt.args, err, tt.wantIn)
			}
		case err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case cfg.MasterTTL != tt.want || cfg.lanConfig(nil, nil, nil).MasterTTL != tt.want:
			t.Errorf("%v: TTL %v, want %v", tt.args, cfg.MasterTTL, tt.want)
		}
	}
	var help bytes.Buffer
	app := newApp()
	app.Writer = &help
	app.RunContext(context.Background(), []string{"lanmanager", "serve", "--help"})
	if !strings.Contains(help.String(), "--master-ttl") || strings.Contains(help.String(), "master-grace") {
		t.Errorf("serve --help should show --master-ttl and hide --master-grace:\n%s", help.String())
	}
}
