package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/needs"
)

// The limits of a need (need add --memory, --cpus, --pids) are enforced by
// each master through cgroups (docs/drivers.md). On a machine that cannot,
// the master does not bid and says why; these tests then skip, unless
// BERTH_LIMITS=require (.ci/run sets it for root), when they fail.

// hog doubles a string until it is 512 MiB long (mawk holds about 750 MiB
// then): far past the tests' 64M limit, yet bounded should the limit fail.
var hog = []string{"/usr/bin/awk", hogScript}

const hogScript = `BEGIN { s = "x"; while (length(s) < 5e8) s = s s; print length(s) }`

// skipUnlessLimits skips the test if the need's instances stay pending
// because no master can enforce its limits.
func skipUnlessLimits(t *testing.T, l *lanEnv, need string) {
	t.Helper()
	for _, r := range l.need(t, need).Reasons {
		if strings.Contains(r, "cannot enforce") {
			if os.Getenv("BERTH_LIMITS") == "require" {
				t.Fatalf("BERTH_LIMITS=require: %s", r)
			}
			t.Skip(r)
		}
	}
}

// TestMemoryLimitOOMKilled: a child that allocates past its need's
// --memory is killed by the kernel, `need show` says "oom-killed (memory
// 64M)" as its last exit, and it backs off like any failure. The limit is
// kept in lan.db across a lanmanager crash, and `master ps` shows a
// limited child's use against its limits.
func TestMemoryLimitOOMKilled(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 4)
	if _, err := os.Stat(hog[0]); err != nil {
		t.Fatalf("%s: %v", hog[0], err)
	}
	l.mustCLI(t, append([]string{"need", "add", "hog", "--memory", "64M", "--restart-delay", "2s", "--"}, hog...)...)
	const want = "oom-killed (memory 64M)"
	waitUntil(t, 30*time.Second, "hog's last exit to say "+want, func() (bool, string) {
		skipUnlessLimits(t, l, "hog")
		st := l.need(t, "hog")
		if len(st.InstanceList) != 1 {
			return false, "no instance"
		}
		in := st.InstanceList[0]
		return in.LastExit == want && in.Failures >= 1, string(in.State) + ", last exit " + in.LastExit
	})
	out := l.mustCLI(t, "need", "show", "hog")
	t.Logf("need show hog:\n%s", out)
	for _, s := range []string{"limits:     memory 64M (per child)", want} {
		if !strings.Contains(out, s) {
			t.Errorf("need show hog:\n%s\nwant %q", out, s)
		}
	}
	in := l.need(t, "hog").InstanceList[0]
	if in.State != needs.Backoff && in.State != needs.Pending && in.State != needs.Starting {
		t.Errorf("hog.0 is %s after an OOM kill, want it backing off and placed again", in.State)
	}

	// A child within its limits runs; ps shows its use against them.
	l.mustCLI(t, "need", "add", "calm", "--protocols", "http", "--memory", "256M", "--cpus", "0.5", "--pids", "64", "--", bin.hello)
	waitFor(t, 30*time.Second, "calm running", func() bool { return len(l.running(t, "calm")) == 1 })
	var found bool
	for _, c := range m.ps(t) {
		if c.Instance != "calm.0" {
			continue
		}
		found = true
		if c.Limits == nil || *c.Limits != (needs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 64}) {
			t.Errorf("ps: calm.0 limits %+v", c.Limits)
		}
		if u := c.Usage; u == nil || u.Memory <= 0 || u.Memory > 256<<20 || u.PIDs < 1 || u.PIDs > 64 || u.CPUs < 0 || u.CPUs > 0.5*1.5 {
			t.Errorf("ps: calm.0 usage %+v, want memory within 256M, 1-64 pids, CPU within the limit", u)
		} else {
			t.Logf("calm.0 uses %d bytes, %d pids, %.3f CPU", u.Memory, u.PIDs, u.CPUs)
		}
	}
	if !found {
		t.Fatal("ps does not list calm.0")
	}

	// The lanmanager keeps the limits in lan.db: after a crash the needs
	// still have them.
	l.kill9()
	l.restart(t)
	waitFor(t, 20*time.Second, "the master to link again", func() bool { return l.connected(t, "m1") })
	for name, want := range map[string]needs.Limits{"hog": {Memory: 64 << 20}, "calm": {Memory: 256 << 20, CPUs: 0.5, PIDs: 64}} {
		if got := l.need(t, name).Limits; got == nil || *got != want {
			t.Errorf("after a lanmanager restart %s has limits %+v, want %+v", name, got, want)
		}
	}
}

// TestMemoryLimitAdopted: a master crashes and restarts; the child it
// adopts keeps its cgroups, so it still cannot pass its limit, its OOM
// kill is still reported as such, and its cgroups are removed once it is
// gone.
func TestMemoryLimitAdopted(t *testing.T) {
	l := startLan(t, "")
	m := startMaster(t, l, "m1", 4)
	trigger := filepath.Join(t.TempDir(), "go")
	script := `while [ ! -e "$TRIGGER" ]; do sleep 0.05; done; exec ` + hog[0] + ` '` + hogScript + `'`
	l.mustCLI(t, "need", "add", "late", "--memory", "64M", "--restart-delay", "30s", "--env", "TRIGGER="+trigger, "--", "/bin/sh", "-c", script)
	waitUntil(t, 30*time.Second, "late.0 to start", func() (bool, string) {
		skipUnlessLimits(t, l, "late")
		ps := m.ps(t)
		return len(ps) == 1, "ps lists " + strings.Repeat("a child ", len(ps))
	})
	before := m.ps(t)[0]
	m.kill9()
	m.restart(t, l)
	waitFor(t, 20*time.Second, "late.0 adopted", func() bool {
		ps := m.ps(t)
		return len(ps) == 1 && ps[0].Adopted && ps[0].PID == before.PID
	})
	memDir := v1Dir(m, "memory", before.Alloc)
	if _, err := os.Stat(memDir); err != nil {
		t.Fatalf("the adopted child's memory cgroup: %v", err)
	}
	if err := os.WriteFile(trigger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const want = "oom-killed (memory 64M)"
	waitUntil(t, 30*time.Second, "late's last exit to say "+want, func() (bool, string) {
		in := l.need(t, "late").InstanceList[0]
		return in.LastExit == want, string(in.State) + ", last exit " + in.LastExit
	})
	for _, c := range []string{"memory", "cpu", "pids"} {
		if d := v1Dir(m, c, before.Alloc); exists(d) {
			t.Errorf("%s left behind after the adopted child was killed", d)
		}
	}
}

// v1Dir is the v1 cgroup of controller c the master m gives the child of
// allocation alloc: <mount>/berth/<hash of m's runtime directory>/<alloc>.
func v1Dir(m *masterEnv, c, alloc string) string {
	abs, _ := filepath.Abs(filepath.Join(m.dir, "rt"))
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join("/sys/fs/cgroup", c, "berth", hex.EncodeToString(sum[:8]), alloc)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
