package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/spawn"
)

// TestDriverOptionsFromSpec: the spec's DriverOpts (a need's --driver-opt,
// as an external driver receives them) are the child's binds, after the
// Driver's own Options.
func TestDriverOptionsFromSpec(t *testing.T) {
	requireSandbox(t)
	data, conf := t.TempDir(), t.TempDir()
	spec := helperSpec(t, "write", filepath.Join(data, "f"), filepath.Join(conf, "f"))
	spec.DriverOpts = []string{"bind=" + data}
	ro, err := ParseOptions([]string{"ro-bind=" + conf})
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, spec, ro)
	ex, log := waitExit(t, c, spec.LogPath)
	if ex.Code != 1 || !strings.Contains(log, "wrote "+filepath.Join(data, "f")) ||
		!strings.Contains(log, "write "+filepath.Join(conf, "f")+": open "+filepath.Join(conf, "f")+": read-only file system") {
		t.Fatalf("exit %v, want 1 with the bind= of the spec written and the ro-bind= of the Driver refused; log:\n%s", ex, log)
	}
	if b, err := os.ReadFile(filepath.Join(data, "f")); err != nil || string(b) != "from the sandbox\n" {
		t.Fatalf("the bound file on the host: %q, %v", b, err)
	}
}

// TestDriverBadOption: a bad option of the spec is a start error naming
// the option; a path the Driver's Options already name is one too.
func TestDriverBadOption(t *testing.T) {
	data := t.TempDir()
	own, err := ParseOptions([]string{"bind=" + data})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		opts []string
		want error
	}{
		{[]string{"rw=/srv"}, ErrUnknownOption},
		{[]string{"bind=srv"}, ErrBadPath},
		{[]string{"tmpfs=" + data + "/"}, ErrDuplicatePath},
	} {
		spec := helperSpec(t, "write")
		spec.DriverOpts = tt.opts
		_, err := spawn.Start(t.Context(), Driver{Options: own}, spec)
		se, ok := errorsAs[*spawn.StartError](err)
		oe, ok2 := errorsAs[*OptionError](err)
		if !ok || !ok2 || !errorsIs(err, tt.want) || se.Command != spec.Command[0] || !strings.Contains(err.Error(), `driver option "`+tt.opts[0]+`"`) {
			t.Errorf("options %q: err %v (%T, option error %+v), want a start error naming the option, %v", tt.opts, err, err, oe, tt.want)
		}
	}
}

// TestCheckerKeepsItsAnswer: a Checker runs bwrap once per TTL and gives
// Available's reason as its error.
func TestCheckerKeepsItsAnswer(t *testing.T) {
	calls := filepath.Join(t.TempDir(), "calls")
	fake := filepath.Join(t.TempDir(), "bwrap")
	script := "#!/bin/sh\necho \"$1\" >> " + calls + "\necho 'bubblewrap 0.3.0'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "\n")
	}
	c := &Checker{Sandbox: &Sandbox{Bwrap: fake}, TTL: 1 << 62}
	for range 3 {
		if err := c.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "older than 0.4.0") {
			t.Fatalf("Check: %v, want the version's reason", err)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("bwrap ran %d times for 3 checks within the TTL, want 1", n)
	}
	c = &Checker{Sandbox: &Sandbox{Bwrap: fake}} // TTL 0: every time
	c.Check(t.Context())
	c.Check(t.Context())
	if n := count(); n != 3 {
		t.Fatalf("bwrap ran %d times in all, want 3", n)
	}
}
