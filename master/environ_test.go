package master_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/ipchub"
	"berth/lan"
	"berth/master"
)

// TestChildEnvironFromOptions: children start from Options.Environ, not
// from the master process's environment (the package never reads it):
// berth's own variables, PORT and LISTEN_* are dropped from it and the
// contract is added; without Options.Environ a child gets only
// master.DefaultPath, as systemd's services do.
func TestChildEnvironFromOptions(t *testing.T) {
	t.Setenv("BERTH_TEST_NOT_GIVEN", "leak")
	for _, tt := range []struct {
		name     string
		environ  []string
		wantPath string
		want     []string
	}{
		{"given", []string{"PATH=/usr/bin:/bin", "GIVEN=yes", "BERTH_NEED=spoof", "PORT=1", "LISTEN_FDS=9"}, "/usr/bin:/bin", []string{"GIVEN=yes"}},
		{"nil", nil, master.DefaultPath, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newLan(t)
			cfg := testConfig(t, strings.TrimPrefix(c.Addr, "http://"))
			a, err := master.Open(t.Context(), master.Options{Config: cfg, Logger: testLogger(t), StopGrace: time.Second, Environ: tt.environ})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			out := filepath.Join(t.TempDir(), "env")
			n := 1
			if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "envtest", Command: []string{"/bin/sh", "-c", "env > " + out + "; exec sleep 600"}, Instances: &n}); err != nil {
				t.Fatal(err)
			}
			var env []string
			waitFor(t, 20*time.Second, "the child to write its environment", func() bool {
				b, err := os.ReadFile(out)
				env = strings.Split(string(b), "\n")
				return err == nil && strings.Contains(string(b), "BERTH_PIPE=")
			})
			has := func(kv string) bool {
				for _, e := range env {
					if e == kv {
						return true
					}
				}
				return false
			}
			for _, kv := range append(tt.want, "PATH="+tt.wantPath, "BERTH_NEED=envtest", "BERTH_INSTANCE=envtest.0") {
				if !has(kv) {
					t.Errorf("child environment lacks %s:\n%s", kv, strings.Join(env, "\n"))
				}
			}
			for _, e := range env {
				if strings.HasPrefix(e, "BERTH_TEST_NOT_GIVEN=") || e == "BERTH_NEED=spoof" || e == "PORT=1" || strings.HasPrefix(e, "LISTEN_") {
					t.Errorf("child environment has %s", e)
				}
			}
		})
	}
}

// TestChildGetsIPC: with an IPC hub, a child gets BERTH_IPC* for its
// need's group and a token of its own that the hub admits to that group
// only; the hub then names the peer's need and instance on GET /v1/ipc.
func TestChildGetsIPC(t *testing.T) {
	hub, err := lan.OpenIPC(t.Context(), lan.IPCConfig{Listen: "127.0.0.1:0", Token: "hub-secret", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t),
		BidWindow: time.Second, StopGrace: time.Second, IPC: hub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := &lan.Client{Addr: srv.Addr()}
	a, err := master.Open(t.Context(), master.Options{Config: testConfig(t, srv.Addr()), Logger: testLogger(t), StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	out := filepath.Join(t.TempDir(), "env")
	n := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "ipcenv", IPCGroup: "shared", Instances: &n,
		Command: []string{"/bin/sh", "-c", "env > " + out + ".tmp; mv " + out + ".tmp " + out + "; exec sleep 600"}}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	waitFor(t, 20*time.Second, "the child to write its environment", func() bool {
		b, err := os.ReadFile(out)
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				env[k] = v
			}
		}
		return err == nil
	})
	_, port, _ := strings.Cut(hub.Addr(), ":")
	for k, want := range map[string]string{"BERTH_IPC": "ws://" + hub.Addr(), "BERTH_IPC_HOST": "127.0.0.1", "BERTH_IPC_PORT": port,
		"BERTH_IPC_GROUP": "shared", "BERTH_IPC_TOKEN": ipchub.ChildToken("hub-secret", "shared", "ipcenv.0")} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	dial := func(group string) (*websocket.Conn, *http.Response, error) {
		q := url.Values{"id": {"child-peer"}, "v": {"1.0.0"}, "t": {env["BERTH_IPC_TOKEN"]}}
		return websocket.Dial(t.Context(), env["BERTH_IPC"]+"/"+group+"/connect?"+q.Encode(), nil)
	}
	if _, resp, err := dial("other"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("the child's token in another group: %v %v, want 403", resp, err)
	}
	ws, _, err := dial("shared")
	if err != nil {
		t.Fatalf("the child's token in its group: %v", err)
	}
	defer ws.CloseNow()
	// The dial returns once the upgrade is answered; the hub registers the
	// peer just after.
	var st *lan.IPCStatus
	waitFor(t, 10*time.Second, "the hub to list the child's peer", func() bool {
		st, err = c.IPC(t.Context())
		return err == nil && len(st.Groups) > 0
	})
	if len(st.Groups) != 1 || st.Groups[0].Name != "shared" || len(st.Groups[0].Peers) != 1 ||
		st.Groups[0].Peers[0].Need != "ipcenv" || st.Groups[0].Peers[0].Instance != "ipcenv.0" || st.Groups[0].Peers[0].ID != "child-peer" {
		t.Errorf("GET /v1/ipc = %+v, want group shared with child-peer of ipcenv.0", st)
	}
	if !st.Token || st.Listen != hub.Addr() {
		t.Errorf("GET /v1/ipc: token %v listen %q, want true and %s", st.Token, st.Listen, hub.Addr())
	}
}
