package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIPCFlags: every bad IPC flag of serve, dev and ipc serve exits 2 and
// names the flag, before anything listens.
func TestIPCFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--ipc-listen", "nonsense"}, "--ipc-listen"},
		{[]string{"dev", "--ipc-listen", "127.0.0.1"}, "--ipc-listen"},
		{[]string{"serve", "--ipc-token", "a b"}, "--ipc-token"},
		{[]string{"serve", "--ipc-token", "x?t=1"}, "--ipc-token"},
		{[]string{"serve", "--token", "same", "--ipc-token", "same"}, "must not be the API token"},
		{[]string{"serve", "--gateway-listen", "nonsense"}, "--gateway-listen"},
		{[]string{"dev", "--gateway-token", "a b"}, "--gateway-token"},
		{[]string{"serve", "--token", "same", "--gateway-token", "same"}, "must not be the API token"},
		{[]string{"ipc", "serve", "--listen", "nonsense"}, "--listen"},
		{[]string{"ipc", "serve", "--token", "a&b"}, "--token"},
		{[]string{"ipc", "serve", "extra"}, "extra"},
	} {
		_, errOut, code := runCode(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, %q; want 2 naming %s", tt.args, code, errOut, tt.want)
		}
	}
}

// TestIPCTokenFileDamaged: a damaged or foreign ipc-token file stops serve
// with an error naming the file, and is left as it was.
func TestIPCTokenFileDamaged(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"empty", "", 0o600, "empty"},
		{"readable by others", "abc\n", 0o644, "chmod 600"},
		{"binary", "\x00\x01\x02", 0o600, "printable"},
	} {
		data := t.TempDir()
		path := filepath.Join(data, "ipc-token")
		if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, tt.mode)
		_, errOut, code := runCode(t, "serve", "--listen", "127.0.0.1:0", "--ipc-listen", "127.0.0.1:0", "--gateway-listen", "off", "--data", data, "--announce-dir", t.TempDir())
		if code == 0 || !strings.Contains(errOut, path) || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, %q; want a failure naming %s and %q", tt.name, code, errOut, path, tt.want)
		}
		if b, _ := os.ReadFile(path); string(b) != tt.content {
			t.Errorf("%s: the file now holds %q", tt.name, b)
		}
	}
}

// TestNeedIngressCLI: need add --ingress/--balance declare a need's
// ingress, need show prints it; bad values exit 2 naming the flag, and a
// port another need has is refused naming that need.
func TestNeedIngressCLI(t *testing.T) {
	srv := startLan(t)
	mustRun(t, srv, "need", "add", "web", "--instances", "0", "--protocols", "http", "--ingress", "http=8080", "--balance", "least-conn", "--", "x")
	out := mustRun(t, srv, "need", "show", "web")
	if !strings.Contains(out, "ingress:    http=8080 on every master (balance least-conn)") {
		t.Errorf("need show:\n%s", out)
	}
	mustRun(t, srv, "need", "add", "res", "--instances", "0", "--protocols", "http", "--ingress", "http=8081", "--balance", "resource", "--balance-weights", "cpu=5", "--", "x")
	if out := mustRun(t, srv, "need", "show", "res"); !strings.Contains(out, "(balance resource, weights cpu=5)") {
		t.Errorf("need show res:\n%s", out)
	}
	var st struct {
		Ingress []struct{ Protocol string }
		Balance string
	}
	if err := json.Unmarshal([]byte(mustRun(t, srv, "need", "show", "web", "--json")), &st); err != nil || len(st.Ingress) != 1 || st.Balance != "least-conn" {
		t.Errorf("need show --json: %+v %v", st, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--ingress", "http"}, "--ingress"},
		{[]string{"--ingress", "http=x"}, "--ingress"},
		{[]string{"--ingress", "ws=9000"}, "declares no ws port"},
		{[]string{"--ingress", "http=9000", "--balance", "random"}, "want one of round-robin"},
		{[]string{"--ingress", "http=9000", "--balance", "resource", "--balance-weights", "disk=1"}, "balance_weights"},
		{[]string{"--ingress", "http=9000", "--balance-weights", "cpu=1"}, "only with --balance resource"},
		{[]string{"--ingress", "http=8080"}, `already the ingress of need "web"`},
	} {
		args := append(append([]string{"need", "add", "other", "--instances", "0", "--protocols", "http"}, tt.args...), "--", "x")
		if out, err := run(t, srv, args...); err == nil || !strings.Contains(out+err.Error(), tt.want) {
			t.Errorf("%v: %v %s; want an error with %q", tt.args, err, out, tt.want)
		}
	}
}

// TestNeedUpstreamCLI: need add --upstream/--peers/--peers-signal declare
// them, need show prints them and says when an upstream leads nowhere yet;
// bad values exit with an error naming the flag or field.
func TestNeedUpstreamCLI(t *testing.T) {
	srv := startLan(t)
	mustRun(t, srv, "need", "add", "app", "--instances", "0", "--upstream", "db=postgres:tcp", "--upstream", "cache-1=redis:tcp",
		"--peers", "--peers-signal", "HUP", "--", "x")
	out := mustRun(t, srv, "need", "show", "app")
	for _, want := range []string{
		"upstream:   db → postgres:tcp, in BERTH_UPSTREAM_DB (no such need yet",
		"upstream:   cache-1 → redis:tcp, in BERTH_UPSTREAM_CACHE_1 (no such need yet",
		"peers:      BERTH_PEERS_FILE and change messages on the pipe, and SIGHUP on each change",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("need show lacks %q:\n%s", want, out)
		}
	}
	mustRun(t, srv, "need", "add", "postgres", "--instances", "0", "--protocols", "tcp", "--", "x")
	if out := mustRun(t, srv, "need", "show", "app"); !strings.Contains(out, "db → postgres:tcp, in BERTH_UPSTREAM_DB (no running instance") {
		t.Errorf("need show once postgres exists:\n%s", out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--upstream", "db"}, "NAME=NEED:PROTOCOL"},
		{[]string{"--upstream", "DB=postgres:tcp"}, "name \"DB\""},
		{[]string{"--upstream", "db=Post:tcp"}, "upstreams[0].need"},
		{[]string{"--upstream", "db=postgres:udp"}, "udp"},
		{[]string{"--upstream", "a-b=x:tcp", "--upstream", "a_b=y:tcp"}, "BERTH_UPSTREAM_A_B is set by another upstream"},
		{[]string{"--peers-signal", "HUP"}, "give --peers too"},
		{[]string{"--peers", "--peers-signal", "KILL"}, "want one of HUP, USR1, USR2"},
	} {
		args := append(append([]string{"need", "add", "other", "--instances", "0"}, tt.args...), "--", "x")
		if out, err := run(t, srv, args...); err == nil || !strings.Contains(out+err.Error(), tt.want) {
			t.Errorf("%v: %v %s; want an error with %q", tt.args, err, out, tt.want)
		}
	}
}
