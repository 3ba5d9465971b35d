package master_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/lan"
)

// writeScript writes an executable shell script named name into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// reasonFor polls need's status until one of its reasons contains want and
// returns it.
func reasonFor(t *testing.T, c *lan.Client, need, want string) string {
	t.Helper()
	var got string
	waitFor(t, 10*time.Second, "a reason containing "+want, func() bool {
		st, err := c.Need(t.Context(), need)
		if err != nil {
			return false
		}
		for _, r := range st.Reasons {
			if strings.Contains(r, want) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// TestBidUsesChildEnvironment (issue 7 §6): the bid resolves the command as
// the spawn does, from the child's environment. A need whose PATH (from its
// env) holds the only copy of its program, or that names ${X} from its env,
// is bid for and runs; the master's own PATH and variables used to decide,
// and refused both for ever.
func TestBidUsesChildEnvironment(t *testing.T) {
	_, c, a := newPair(t)
	bin := t.TempDir()
	writeScript(t, bin, "berth-only-here", "exec sleep 600")
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "bypath", Command: []string{"berth-only-here"}, Instances: &one,
		Env: map[string]string{"PATH": bin + ":/usr/bin:/bin"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "byvar", Command: []string{"${X}/berth-only-here"}, Instances: &one,
		Env: map[string]string{"X": bin}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "both needs running", func() bool {
		return running(t, c, "bypath") == 1 && running(t, c, "byvar") == 1
	})
	if n := len(a.Children()); n != 2 {
		t.Errorf("%d children, want 2", n)
	}
	for _, name := range []string{"bypath", "byvar"} {
		st, err := c.Need(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range st.InstanceList {
			if in.Restarts > 0 || in.Failures > 0 {
				t.Errorf("instance %s: %d restarts, %d failures; want none", in.Name, in.Restarts, in.Failures)
			}
		}
	}
}

// TestBidUnbracedIsLiteral (issue 7 §6): $HOME/x without braces is a
// literal path for the spawn, so the bid refuses it too, naming it, even
// where the master's $HOME/x exists; it used to bid with the master's
// $HOME expanded and then crash-loop on the literal path.
func TestBidUnbracedIsLiteral(t *testing.T) {
	home := t.TempDir()
	writeScript(t, home, "x", "exec sleep 600")
	t.Setenv("HOME", home)
	_, c, a := newPair(t)
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "literal", Command: []string{"$HOME/x"}, Instances: &one}); err != nil {
		t.Fatal(err)
	}
	r := reasonFor(t, c, "literal", `command "$HOME/x"`)
	if !strings.Contains(r, "no such file or directory") {
		t.Errorf("reason %q does not say the file is missing", r)
	}
	if kids := a.Children(); len(kids) != 0 {
		t.Errorf("children %+v: the master spawned a command it cannot run", kids)
	}
	st, err := c.Need(t.Context(), "literal")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range st.InstanceList {
		if in.Restarts > 0 || in.Failures > 0 {
			t.Errorf("instance %s: %d restarts, %d failures; want none, it was never started", in.Name, in.Restarts, in.Failures)
		}
	}

	// With braces both expand it, from the child's environment (which
	// inherits the master's HOME), and it runs.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "braced", Command: []string{"${HOME}/x"}, Instances: &one}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "braced running", func() bool { return running(t, c, "braced") == 1 })
}
