package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/internal/mustrun"
)

// TestRuntimeDirDeletedKill9 (issue 7 §4, first bullet) with the real
// binaries, on both tracking paths: the runtime directory of a master with
// three children is deleted. The master recreates it (same master.id) within
// its 5 s check and new instances still start; then it is killed with
// SIGKILL and started again on empty databases. The earlier children are
// found by the master's cgroup or BERTH_MASTER and stopped, so as many
// children run as instances. `master ps` says how they are tracked.
func TestRuntimeDirDeletedKill9(t *testing.T) {
	for _, mode := range []string{"cgroup", "processgroup"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "cgroup" && os.Geteuid() != 0 {
				mustrun.Skip(t, mustrun.Cgroups, "cgroups need root here")
			}
			const size = 8
			base := freeports.Block(t, 3*size)
			l := startLan(t, "")
			m := startMasterWith(t, l, "m1", base, base+size, size, masterOpts{extra: map[string]any{"tracking": mode}})
			l.mustCLI(t, "need", "add", "web", "--instances", "3", "--protocols", "http", "--", bin.hello)
			waitFor(t, 30*time.Second, "3 running", func() bool { return len(l.running(t, "web")) == 3 })
			want := map[string]string{"cgroup": "cgroup ", "processgroup": "process group "}[mode]
			for _, c := range m.ps(t) {
				if !strings.HasPrefix(c.Tracking, want) {
					t.Errorf("master ps: %s tracked by %q, want %q...", c.Instance, c.Tracking, want)
				}
			}
			rt := filepath.Join(m.dir, "rt")
			id, err := os.ReadFile(filepath.Join(rt, "master.id"))
			if err != nil {
				t.Fatal(err)
			}

			began := time.Now()
			if err := os.RemoveAll(rt); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 15*time.Second, "master.id back and master ps answering", func() bool {
				b, err := os.ReadFile(filepath.Join(rt, "master.id"))
				if err != nil || string(b) != string(id) {
					return false
				}
				out, err := exec.Command(bin.master, "ps", "--json", "--config", m.config).Output()
				return err == nil && strings.Count(string(out), `"instance"`) == 3
			})
			t.Logf("FIGURE runtime-dir-recreated %s: master.id and control socket back %v after the deletion (check every 5 s)",
				mode, time.Since(began).Round(time.Millisecond))
			l.mustCLI(t, "need", "scale", "web", "5")
			waitFor(t, 30*time.Second, "5 running after the deletion", func() bool { return len(l.running(t, "web")) == 5 })
			old := leaders(m.marker)
			if len(old) != 5 {
				t.Fatalf("%d children, want 5", len(old))
			}

			m.kill9()
			m.restart(t, l)
			waitFor(t, 30*time.Second, "5 instances running and 5 children", func() bool {
				return len(l.running(t, "web")) == 5 && len(leaders(m.marker)) == 5
			})
			for pid := range old {
				if alive(pid) {
					t.Errorf("child %d of the killed master, which no record names, still runs", pid)
				}
			}
			if got := len(childProcs(m.marker)); got != 5 {
				t.Errorf("%d processes for 5 instances", got)
			}
		})
	}
}

// removeCgroups removes the cgroups a master with runtime directory rt
// left (once its children are killed): <mount>/berth/<hash of rt>/*, then
// the master's own, each only if empty. The hash is the master's: the first
// 16 hex digits of the SHA-256 of the absolute path.
func removeCgroups(rt string) {
	abs, err := filepath.Abs(rt)
	if err != nil {
		return
	}
	sum := sha256.Sum256([]byte(abs))
	// The v2 tree, and the v1 hierarchies that enforce limits.
	for _, mount := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu",
		"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/pids"} {
		dir := filepath.Join(mount, "berth", hex.EncodeToString(sum[:8]))
		subs, _ := filepath.Glob(filepath.Join(dir, "*", "cgroup.procs"))
		for _, s := range subs {
			rmdirBusy(filepath.Dir(s))
		}
		syscall.Rmdir(dir)
	}
}

// rmdirBusy removes the cgroup dir, trying again for up to 5 s while it is
// busy: a child just killed may still be in it until it is reaped.
func rmdirBusy(dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Rmdir(dir) == syscall.EBUSY && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
