package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/cmd/internal/clitest"
)

func runCode(ctx context.Context, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := runApp(ctx, append([]string{"master"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestPSWritesNoConfig: `master ps` with no config file says so (exit 2)
// and writes none; it used to write the defaults silently.
func TestPSWritesNoConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masterconfig.json")
	_, errOut, code := runCode(t.Context(), "ps", "--config", path)
	if code != 2 || !strings.Contains(errOut, path) || !strings.Contains(errOut, "master run writes one") {
		t.Errorf("master ps without a config: exit %d %q; want exit 2 naming the file", code, errOut)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("master ps wrote a config file")
	}
}

// TestRunSaysItWroteDefaults: `master run` writes the defaults when the
// config is missing, and says so.
func TestRunSaysItWroteDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masterconfig.json")
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // stop at once: only the start matters here
	t.Setenv("BERTH_ANNOUNCE_DIR", t.TempDir())
	_, errOut, _ := runCode(ctx, "run", "--config", path, "--stop-children")
	if !strings.Contains(errOut, path+" did not exist; wrote it with the defaults") {
		t.Errorf("master run: %q; want it to say it wrote the defaults", errOut)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("config not written: %v", err)
	}
}

// TestMasterExitCodes: the table shared with lanmanager.
func TestMasterExitCodes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "master version"},
		{[]string{"rnu"}, 2, `did you mean "run"?`},
		{[]string{"ps", "--jsno"}, 2, "did you mean --json?"},
		{[]string{"run", "--help"}, 0, "USAGE"},
		{[]string{"completion", "bash"}, 0, "complete -o bashdefault"},
		{[]string{"completion", "bash", "--nope"}, 2, "unknown flag --nope"},
		{[]string{"completion", "bash", "zsh"}, 2, `want one shell, bash, zsh or fish; got "bash" "zsh"`},
	} {
		out, errOut, code := runCode(t.Context(), tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("master %s: exit %d, want %d; output %q, want %q", strings.Join(tt.args, " "), code, tt.code, out+errOut, tt.want)
		}
	}
}

// TestStrayArgument: run, ps and drivers take no arguments; a stray one is
// refused by name, exit 2, before anything is read or written. urfave/cli
// stops parsing flags at the first argument: `master run extra --config
// bad.json` used to write masterconfig.json into the working directory.
// Should the command run, the --config before the stray argument keeps it
// in a temp dir, and the cancelled context stops it at once.
func TestStrayArgument(t *testing.T) {
	t.Setenv("BERTH_ANNOUNCE_DIR", t.TempDir())
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	checked := 0
	for _, cmd := range newApp().Commands {
		if cmd.Action == nil || cmd.ArgsUsage != "" || cmd.Name == "help" {
			continue
		}
		checked++
		path := filepath.Join(t.TempDir(), "masterconfig.json")
		args := []string{cmd.Name, "--config", path, "extra", "--config", "bad.json"}
		_, errOut, code := runCode(ctx, args...)
		if code != 2 || !strings.Contains(errOut, `takes no arguments, got "extra"`) {
			t.Errorf("master %s: exit %d, %q; want exit 2 naming the stray argument", strings.Join(args, " "), code, errOut)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("master %s wrote %s", strings.Join(args, " "), path)
		}
	}
	if checked != 3 {
		t.Errorf("%d commands without arguments, want 3 (run, ps, drivers)", checked)
	}
	if entries, _ := os.ReadDir("."); len(entries) != 0 {
		t.Errorf("a refused command wrote into the working directory: %v", entries)
	}
}

// TestEveryAlias: a flag given by any of its names, before or after the
// positional arguments, sets the one value the command reads.
func TestEveryAlias(t *testing.T) {
	if n := clitest.EveryAlias(t, newApp); n < 4 {
		t.Fatalf("%d alias cases checked, want at least master run -v/--verbose, before and after", n)
	}
}

// TestRunRefusesReadableToken: master run refuses a config that holds the
// token while others may read it; master ps, which sends no token, reads
// it.
func TestRunRefusesReadableToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "masterconfig.json")
	if err := os.WriteFile(path, []byte(`{"token": "T", "runtimedirectory": "rt"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	t.Setenv("BERTH_ANNOUNCE_DIR", t.TempDir())
	_, errOut, code := runCode(ctx, "run", "--config", path)
	if code != 1 || !strings.Contains(errOut, "chmod 600 "+path) {
		t.Errorf("master run with a 0644 config holding the token: exit %d, %q; want 1 and chmod 600", code, errOut)
	}
	if _, errOut, _ := runCode(t.Context(), "ps", "--config", path); strings.Contains(errOut, "chmod 600") || !strings.Contains(errOut, "no master has run with runtime directory") {
		t.Errorf("master ps refused the config for its token: %q", errOut)
	}
}
