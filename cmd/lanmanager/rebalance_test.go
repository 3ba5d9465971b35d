package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"berth/lan"
)

// TestNeedRebalanceArgs: need rebalance takes exactly one of NAME and
// --all; anything else is a usage error (exit 2) that says so.
func TestNeedRebalanceArgs(t *testing.T) {
	srv := startLan(t)
	runFakeMaster(t, srv, "0123456789abcdef", "ma")
	mustRun(t, srv, "need", "add", "web", "--instances", "2", "--protocols", "http", "--", "x")
	cl := &lan.Client{Addr: srv.Addr()}
	waitFor(t, "2 running on ma", func() bool { st, err := cl.Need(t.Context(), "web"); return err == nil && st.Running == 2 })
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"need", "rebalance"}, 2, "give the NAME of a need, or --all"},
		{[]string{"need", "rebalance", "web", "--all"}, 2, "not both"},
		{[]string{"need", "rebalance", "--all", "web"}, 2, "not both"},
		{[]string{"need", "rebalance", "web", "api"}, 2, "takes one NAME"},
		{[]string{"need", "rebalance", "web", "--", "x"}, 2, "no command"},
		{[]string{"need", "rebalance", "web", "--al"}, 2, "unknown flag --al"},
		{[]string{"need", "rebalance", "nope"}, 1, `need "nope"`},
		{[]string{"need", "rebalance", "web"}, 0, "need web: nothing to move (1 master(s) may take its instances"},
		{[]string{"need", "rebalance", "--all"}, 0, "need web: nothing to move"},
	} {
		out, errOut, code := runCode(t, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("lanmanager %s: exit %d, want %d; output %q, want it to contain %q", strings.Join(tt.args, " "), code, tt.code, out+errOut, tt.want)
		}
	}
}

// TestNeedRebalanceMoves: with a second master, need rebalance says what
// will move and moves it.
func TestNeedRebalanceMoves(t *testing.T) {
	srv := startLan(t)
	runFakeMaster(t, srv, "0123456789abcdef", "ma")
	mustRun(t, srv, "need", "add", "web", "--instances", "4", "--protocols", "http", "--", "x")
	cl := &lan.Client{Addr: srv.Addr()}
	waitFor(t, "4 running on ma", func() bool { st, err := cl.Need(t.Context(), "web"); return err == nil && st.Running == 4 })
	runFakeMaster(t, srv, "fedcba9876543210", "mb")
	waitFor(t, "mb connected", func() bool { return connected(t, cl, "mb") })
	out := mustRun(t, srv, "need", "rebalance", "web")
	if want := "need web: 2 to move (ma→mb ×2), one at a time; now ma 4, mb 0"; !strings.Contains(out, want) {
		t.Errorf("need rebalance web:\n%s\nwant %q", out, want)
	}
	waitFor(t, "2 running on each", func() bool {
		per := map[string]int{}
		for _, s := range mustServices(t, cl) {
			if s.Handoff == nil && s.State == "running" {
				per[s.Master]++
			}
		}
		return per["ma"] == 2 && per["mb"] == 2
	})
	out = mustRun(t, srv, "need", "rebalance", "--all", "--json")
	var list []*lan.Rebalance
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Need != "web" || len(list[0].Moves) != 0 {
		t.Errorf("need rebalance --all --json = %+v, %v\n%s", list, err, out)
	}
}

func connected(t *testing.T, cl *lan.Client, name string) bool {
	t.Helper()
	ms, err := cl.Masters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == name && m.Connected {
			return true
		}
	}
	return false
}

// TestAutoRebalanceFlags: --auto-rebalance (or --auto) and
// --rebalance-after reach lan.Config; a bad delay, or one without
// --auto-rebalance, is an error that names the flag.
func TestAutoRebalanceFlags(t *testing.T) {
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
		auto   bool
		after  time.Duration
		wantIn string
	}{
		{nil, false, time.Minute, ""},
		{[]string{"--auto-rebalance"}, true, time.Minute, ""},
		{[]string{"--auto"}, true, time.Minute, ""},
		{[]string{"--auto", "--rebalance-after", "5s"}, true, 5 * time.Second, ""},
		{[]string{"--rebalance-after", "5s"}, false, 0, "--rebalance-after: only with --auto-rebalance"},
		{[]string{"--auto", "--rebalance-after", "10ms"}, false, 0, "at least 1s"},
		{[]string{"--auto", "--rebalance-after", "-1s"}, false, 0, "--rebalance-after"},
		{[]string{"--auto", "--rebalance-after", "48h"}, false, 0, "--rebalance-after"},
		{[]string{"--auto", "--rebalance-after", "soon"}, false, 0, "rebalance-after"},
	} {
		cfg, err := parse(tt.args...)
		switch {
		case tt.wantIn != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("%v: %v, want an error mentioning %q", tt.args, err, tt.wantIn)
			}
		case err != nil:
			t.Errorf("%v: %v", tt.args, err)
		default:
			lc := cfg.lanConfig(nil, nil, nil)
			if lc.AutoRebalance != tt.auto || lc.RebalanceAfter != tt.after {
				t.Errorf("%v: lan.Config auto %v after %v, want %v %v", tt.args, lc.AutoRebalance, lc.RebalanceAfter, tt.auto, tt.after)
			}
		}
	}
	// Through the real command line, a bad value exits 2 and names the flag.
	for _, cmd := range []string{"serve", "dev"} {
		if _, errOut, code := runCode(t, cmd, "--rebalance-after", "5s", "--listen", "127.0.0.1:0"); code != 2 || !strings.Contains(errOut, "--rebalance-after") {
			t.Errorf("%s --rebalance-after without --auto: exit %d, %q; want 2 naming the flag", cmd, code, errOut)
		}
	}
}
