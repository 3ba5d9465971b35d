package master_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
