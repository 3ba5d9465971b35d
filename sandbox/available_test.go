package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAvailable: the real bwrap works here (or the test skips, outside CI).
func TestAvailable(t *testing.T) {
	requireSandbox(t)
	if ok, why := Available(); !ok || why != "" {
		t.Fatalf("Available() = %v, %q", ok, why)
	}
}

// TestAvailableWithoutBwrap: a PATH without bwrap gives the reason and the
// package to install.
func TestAvailableWithoutBwrap(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ok, why := Available()
	if ok || why != ErrNoBwrap.Error() || !strings.Contains(why, "bubblewrap") {
		t.Fatalf("Available() = %v, %q; want false, %q", ok, why, ErrNoBwrap)
	}
}

// fakeBwrap writes a shell script that stands in for bwrap: it answers
// --version with version and otherwise prints stderr and exits 1.
func fakeBwrap(t *testing.T, version, stderr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bwrap")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '" + version + "'; exit 0; fi\necho '" + stderr + "' >&2\nexit 1\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAvailableReasons: too old a bwrap, a version that cannot be read,
// and a trial sandbox that fails (as where user namespaces are off), each
// with its reason.
func TestAvailableReasons(t *testing.T) {
	if _, err := exec.LookPath("env"); err != nil {
		t.Skip("no env (coreutils) in PATH: the trial would fail on that first")
	}
	const userns = "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces."
	for _, tt := range []struct {
		version, stderr, want string
	}{
		{"bubblewrap 0.3.3", "", "is bubblewrap 0.3.3, older than 0.4.0"},
		{"something else", "", `--version: unexpected output "something else"`},
		{"bubblewrap x.y", "", `--version: unexpected version "x.y"`},
		{"bubblewrap 0.11.0-rc1", userns, "a trial sandbox failed (exit status 1): " + userns},
	} {
		s := &Sandbox{Bwrap: fakeBwrap(t, tt.version, tt.stderr)}
		ok, why := s.Available(t.Context())
		if ok || !strings.Contains(why, tt.want) {
			t.Errorf("bwrap --version %q: Available() = %v, %q; want false, ...%q", tt.version, ok, why, tt.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string][3]int{
		"bubblewrap 0.8.0\n":    {0, 8, 0},
		"bubblewrap 0.11.0-rc1": {0, 11, 0},
		"bubblewrap 1.2":        {1, 2, 0},
	} {
		if got, err := parseVersion(in); err != nil || got != want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if !older([3]int{0, 3, 9}, minVersion) || older([3]int{0, 4, 0}, minVersion) || older([3]int{1, 0, 0}, minVersion) {
		t.Error("older is wrong")
	}
}
