package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIBadInput checks that bad flags and arguments get a clear error,
// a non-zero exit, and create nothing.
func TestCLIBadInput(t *testing.T) {
	lan := startLan(t, "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"need", "add", "web", "--protocols", "tcp,smtp", "--", "x"}, "smtp"},
		{[]string{"need", "add", "web", "--instances", "2"}, "command"},
		{[]string{"need", "add", "Web!", "--", "x"}, "name"},
		{[]string{"need", "add", "web", "--instances", "-1", "--", "x"}, "instances"},
		{[]string{"need", "add", "web", "--env", "NOEQUALS", "--", "x"}, "env"},
		{[]string{"need", "add", "web", "--bogus", "--", "x"}, "--bogus"},
		{[]string{"need", "scale", "web", "many"}, "many"},
		{[]string{"need", "show"}, "NAME"},
		{[]string{"need", "show", "nope"}, "not found"},
		{[]string{"need", "ls", "extra"}, "no arguments"},
	}
	for _, tt := range tests {
		out, err := lan.cli(t, tt.args...)
		if err == nil {
			t.Errorf("lanmanager %s succeeded: %s", strings.Join(tt.args, " "), out)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("lanmanager %s: %v; want the message to name %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	if out := lan.mustCLI(t, "need", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("bad input created something: %s", out)
	}
}

// TestMasterBadConfig checks that a config with an unknown key or a wrong
// type stops the master with an error naming the key.
func TestMasterBadConfig(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{`{"portrangestrat": {}}`, "portrangestrat"},
		{`{"portrangesize": "big"}`, "portrangesize"},
		{`{"portrangestart": {"tcp": 16500, "http": 16000}}`, "overlap"},
		{`{"lanmanageraddress": "ftp://x"}`, "lanmanageraddress"},
	} {
		path := filepath.Join(t.TempDir(), "masterconfig.json")
		if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin.master, "run", "--config", path).CombinedOutput()
		if err == nil {
			t.Errorf("master run with %s succeeded", tt.body)
			continue
		}
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("master run with %s: %s; want it to name %q", tt.body, out, tt.want)
		}
	}
}
