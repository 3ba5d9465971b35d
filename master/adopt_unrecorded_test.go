package master_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"berth/needs"
	"berth/portoffice"
)

// TestChildSpawnedBeforeItsRecord: a master that died between spawning a
// child and recording its pid left a record without a pid. The next run
// finds the child by its BERTH_ALLOC, adopts it (so it is not a stranger
// holding the instance's ports) and, as the lanmanager does not know that
// allocation, stops it: nothing runs twice. A pid-less record whose child
// never started is dropped, and no process group is signalled for it.
func TestChildSpawnedBeforeItsRecord(t *testing.T) {
	_, _, a, cfg := newPairWith(t, nil)
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	const alloc, never = "unrecorded-0001", "neverstarted-01"
	kid := exec.Command("sleep", "600")
	kid.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	kid.Env = append(os.Environ(), "BERTH_ALLOC="+alloc)
	if err := kid.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { kid.Wait(); close(exited) }()
	t.Cleanup(func() { kid.Process.Kill(); <-exited })

	office, err := portoffice.Open(filepath.Join(cfg.RuntimeDirectory, "ports.db"), portoffice.Options{Ranges: cfg.Ranges(), Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := office.Lease(alloc, []needs.Protocol{needs.HTTP})
	if err == nil {
		_, err = office.Lease(never, []needs.Protocol{needs.HTTP})
	}
	office.Close()
	if err != nil {
		t.Fatal(err)
	}
	need := map[string]any{"name": "svc", "command": []string{"sleep", "600"}, "instances": 8}
	putRecord(t, cfg.RuntimeDirectory, map[string]any{"alloc": alloc, "instance": "svc.3", "ports": ports, "need": need})
	putRecord(t, cfg.RuntimeDirectory, map[string]any{"alloc": never, "instance": "svc.4", "need": need})

	b := openAgent(t, cfg)
	found := false
	for _, k := range b.Children() {
		if k.Alloc == alloc {
			found = true
			if k.PID != kid.Process.Pid || !k.Adopted {
				t.Errorf("child %+v, want pid %d adopted", k, kid.Process.Pid)
			}
		}
		if k.Alloc == never {
			t.Errorf("a child that never started is listed: %+v", k)
		}
	}
	if !found {
		select {
		case <-exited:
			t.Fatal("the unrecorded child was killed at start-up instead of adopted")
		default:
			t.Fatalf("the unrecorded child (pid %d) was not found: children %+v", kid.Process.Pid, b.Children())
		}
	}
	if got := b.Office().Owned(never); got != nil {
		t.Errorf("the never-started record's ports %v are still leased", got)
	}
	// The lanmanager never granted that allocation: it has the master stop it.
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the unknown allocation's child still runs 30s after the master linked")
	}
	waitFor(t, 10*time.Second, "its ports to be released", func() bool { return b.Office().Owned(alloc) == nil })
}
