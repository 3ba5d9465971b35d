package master_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/lan"
	"berth/master"
	"berth/needs"
	"berth/pipes"
	"berth/portoffice"
)

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil && !zombie(pid) }

// addNeed declares a need whose children are this test binary and waits
// until n instances run and have said ready.
func addNeed(t *testing.T, c *lan.Client, a *master.Agent, name string, n int, protos ...needs.Protocol) {
	t.Helper()
	exe, _ := os.Executable()
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: name, Command: []string{exe}, Instances: &n, Protocols: protos}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d %s running", n, name), func() bool { return running(t, c, name) == n })
	waitFor(t, 10*time.Second, "every child to say ready", func() bool {
		for _, k := range a.Children() {
			if !k.Ready {
				return false
			}
		}
		return true
	})
}

// services returns the lanmanager's instances of need by name.
func services(t *testing.T, c *lan.Client, need string) map[string]*needs.Instance {
	t.Helper()
	all, err := c.Services(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*needs.Instance{}
	for _, in := range all {
		if in.Need == need {
			out[in.Name] = in
		}
	}
	return out
}

func byAlloc(kids []pipes.ChildInfo) map[string]pipes.ChildInfo {
	out := map[string]pipes.ChildInfo{}
	for _, k := range kids {
		out[k.Alloc] = k
	}
	return out
}

// TestLeaveAndReadopt: Leave leaves the children running; the next Open
// adopts them with the same pids and ports, reports them as adopted, and
// the lanmanager keeps them (no re-placement, no restart). Stopping an
// adopted child then works as for a spawned one.
func TestLeaveAndReadopt(t *testing.T) {
	_, c, a, cfg := newPairWith(t, nil)
	const n = 3
	addNeed(t, c, a, "svc", n, needs.HTTP, needs.TCP)
	before := byAlloc(a.Children())
	lanBefore := services(t, c, "svc")

	if err := a.Leave(); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := a.Leave(); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	for _, k := range before {
		if !alive(k.PID) {
			t.Fatalf("%s (pid %d) did not survive Leave", k.Instance, k.PID)
		}
	}
	// One record says the child has not said ready yet, as when a master
	// dies before it could write that down: the child says it again on its
	// new connection.
	var unready string
	for alloc := range before {
		unready = alloc
		break
	}
	editRecord(t, cfg.RuntimeDirectory, unready, func(r map[string]any) { r["ready"] = false })

	began := time.Now()
	b := openAgent(t, cfg)
	took := time.Since(began)
	t.Logf("Open adopted %d children in %s", n, took)
	after := byAlloc(b.Children())
	if len(after) != n {
		t.Fatalf("adopted %d children, want %d: %+v", len(after), n, after)
	}
	for alloc, k := range before {
		got, ok := after[alloc]
		switch {
		case !ok:
			t.Errorf("%s (alloc %s) not adopted", k.Instance, alloc)
		case got.PID != k.PID || !maps(got.Ports, k.Ports) || got.Instance != k.Instance:
			t.Errorf("adopted %+v, was %+v", got, k)
		case !got.Adopted || (!got.Ready && alloc != unready):
			t.Errorf("%s: adopted %v ready %v, want both (ready comes from the record)", got.Instance, got.Adopted, got.Ready)
		}
	}
	// Every child redials its pipe, now served by the new master: its
	// heartbeats arrive, and the one recorded unready says ready again.
	waitFor(t, 15*time.Second, "every adopted child to reconnect and beat, and all to be ready", func() bool {
		for _, k := range b.Children() {
			if k.Stats == nil || !k.Ready {
				return false
			}
		}
		return true
	})
	if got := len(b.Office().Leases()); got != 2*n {
		t.Errorf("%d leases after adoption, want %d", got, 2*n)
	}
	waitFor(t, 10*time.Second, "the master to link again", b.Linked)

	// The control socket says adopted too.
	ps := controlPS(t, cfg.RuntimeDirectory)
	for _, k := range ps {
		if !k.Adopted {
			t.Errorf("ps: %s not marked adopted", k.Instance)
		}
	}
	// The lanmanager sees the same placements and pids, none restarted.
	waitFor(t, 10*time.Second, "the lanmanager to see the master again", func() bool {
		ms, err := c.Masters(t.Context())
		return err == nil && len(ms) == 1 && ms[0].Connected
	})
	for name, in := range services(t, c, "svc") {
		old := lanBefore[name]
		if in.Alloc != old.Alloc || in.PID != old.PID || in.Restarts != old.Restarts || in.State != needs.Running {
			t.Errorf("lanmanager has %s as %s alloc %s pid %d restarts %d; before: alloc %s pid %d restarts %d",
				name, in.State, in.Alloc, in.PID, in.Restarts, old.Alloc, old.PID, old.Restarts)
		}
	}

	// Scaling down stops an adopted child and releases its ports.
	if _, err := c.Scale(t.Context(), "svc", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "1 child left", func() bool { return len(b.Children()) == 1 })
	waitFor(t, 10*time.Second, "leases of the stopped children released", func() bool { return len(b.Office().Leases()) == 2 })
	for _, k := range before {
		if k.Instance == "svc.0" {
			continue
		}
		waitFor(t, 10*time.Second, k.Instance+" gone", func() bool { return !alive(k.PID) })
	}
	// Close stops the last one.
	b.Close()
	for _, k := range before {
		if alive(k.PID) {
			t.Errorf("%s (pid %d) survived Close", k.Instance, k.PID)
		}
	}
}

func maps(a, b map[needs.Protocol]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// controlPS asks the master's control socket for its children.
func controlPS(t *testing.T, runtimeDir string) []pipes.ChildInfo {
	t.Helper()
	return askControl[[]pipes.ChildInfo](t, runtimeDir, pipes.TypePS)
}

// askControl sends one request of type typ to the master's control socket
// and decodes its answer.
func askControl[T any](t *testing.T, runtimeDir, typ string) T {
	t.Helper()
	var v T
	sock, err := master.ControlSocket(runtimeDir)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pipes.Dial(t.Context(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SendBody(typ, 1, nil); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestChildDiesWhileMasterDown: a child killed between Leave and Open is
// reported as exited in the first hello, its ports are released, its
// socket file removed, and the lanmanager places the instance again.
func TestChildDiesWhileMasterDown(t *testing.T) {
	_, c, a, cfg := newPairWith(t, nil)
	addNeed(t, c, a, "svc", 1, needs.HTTP)
	old := a.Children()[0]
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(old.PID, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the child to die", func() bool { return !alive(old.PID) })

	b := openAgent(t, cfg)
	for _, k := range b.Children() {
		if k.Alloc == old.Alloc {
			t.Fatalf("a dead child was adopted: %+v", k)
		}
	}
	if ports := b.Office().Owned(old.Alloc); ports != nil {
		t.Errorf("the dead child's ports %v are still leased", ports)
	}
	if _, err := os.Stat(old.Pipe); err == nil {
		t.Errorf("the dead child's socket %s is still there", old.Pipe)
	}
	if _, err := os.Stat(filepath.Dir(old.Pipe)); err == nil {
		t.Errorf("the dead child's socket directory %s is still there", filepath.Dir(old.Pipe))
	}
	waitFor(t, 30*time.Second, "the instance to run again as a new child", func() bool {
		in := services(t, c, "svc")["svc.0"]
		return in != nil && in.State == needs.Running && in.Alloc != old.Alloc && in.PID != old.PID
	})
	in := services(t, c, "svc")["svc.0"]
	if !strings.Contains(in.LastExit, "status unknown") {
		t.Errorf("last exit %q, want the master's report that the child exited while it was down", in.LastExit)
	}
	kids := b.Children()
	if len(kids) != 1 || kids[0].Adopted {
		t.Errorf("children %+v, want one freshly spawned", kids)
	}
}

// TestUnrelatedPIDNeitherAdoptedNorKilled: a record whose pid now belongs
// to an unrelated process (another start time) is dropped: the process is
// left alone, the record's leases are released and its socket file removed.
func TestUnrelatedPIDNeitherAdoptedNorKilled(t *testing.T) {
	_, _, a, cfg := newPairWith(t, nil)
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	// The stranger leads its own group, as a child would: a kill of the
	// group by mistake would reach it.
	sleep := exec.Command("sleep", "600")
	sleep.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	pid := sleep.Process.Pid
	start := procStartTime(t, pid)

	const alloc = "stranger-0001"
	sockDir, err := master.SocketDir(cfg.RuntimeDirectory)
	if err != nil {
		t.Fatal(err)
	}
	pipe := filepath.Join(sockDir, "stranger.sock")
	staleSocket(t, pipe)
	office, err := portoffice.Open(filepath.Join(cfg.RuntimeDirectory, "ports.db"), portoffice.Options{Ranges: cfg.Ranges(), Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := office.Lease(alloc, []needs.Protocol{needs.HTTP})
	office.Close()
	if err != nil {
		t.Fatal(err)
	}
	putRecord(t, cfg.RuntimeDirectory, map[string]any{"alloc": alloc, "instance": "svc.7", "pid": pid,
		"start_time": start + 12345, "ports": ports, "pipe": pipe, "log": filepath.Join(cfg.RuntimeDirectory, "logs", "svc.7.log"),
		"need": map[string]any{"name": "svc", "command": []string{"sleep", "600"}, "instances": 8}})

	b := openAgent(t, cfg)
	if kids := b.Children(); len(kids) != 0 {
		t.Errorf("children %+v, want none: the pid is a stranger's", kids)
	}
	if !alive(pid) {
		t.Fatalf("the unrelated process %d was killed", pid)
	}
	if got := b.Office().Owned(alloc); got != nil {
		t.Errorf("the stale record's ports %v are still leased", got)
	}
	if _, err := os.Stat(pipe); err == nil {
		t.Errorf("the stale record's socket %s is still there", pipe)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if recs := records(t, cfg.RuntimeDirectory); len(recs) != 0 {
		t.Errorf("records left: %v", recs)
	}
	if !alive(pid) {
		t.Fatalf("the unrelated process %d was killed by Close", pid)
	}
}

func procStartTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readID(t *testing.T, runtimeDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runtimeDir, "master.id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// staleSocket leaves a socket file at path with nobody listening.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

// putRecord writes a child record into master.db the way the schema in the
// package doc describes it.
func putRecord(t *testing.T, runtimeDir string, rec map[string]any) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(runtimeDir, "master.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, _ := json.Marshal(rec)
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("children"))
		if err != nil {
			return err
		}
		return b.Put([]byte(rec["alloc"].(string)), v)
	}); err != nil {
		t.Fatal(err)
	}
}

// editRecord rewrites the child record of alloc in master.db.
func editRecord(t *testing.T, runtimeDir, alloc string, edit func(map[string]any)) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(runtimeDir, "master.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("children"))
		var r map[string]any
		if err := json.Unmarshal(b.Get([]byte(alloc)), &r); err != nil {
			return err
		}
		edit(r)
		v, _ := json.Marshal(r)
		return b.Put([]byte(alloc), v)
	}); err != nil {
		t.Fatal(err)
	}
}

func records(t *testing.T, runtimeDir string) []string {
	t.Helper()
	db, err := bolt.Open(filepath.Join(runtimeDir, "master.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("children")).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	})
	return keys
}

// TestAdoptedChildExitNoticed: an adopted child that dies is seen through
// its pidfd, reported with an unknown status, and placed again.
func TestAdoptedChildExitNoticed(t *testing.T) {
	_, c, a, cfg := newPairWith(t, nil)
	addNeed(t, c, a, "svc", 1, needs.HTTP)
	old := a.Children()[0]
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	b := openAgent(t, cfg)
	if kids := b.Children(); len(kids) != 1 || !kids[0].Adopted || kids[0].PID != old.PID {
		t.Fatalf("children %+v, want pid %d adopted", kids, old.PID)
	}
	waitFor(t, 10*time.Second, "the master to link again", b.Linked)
	syscall.Kill(old.PID, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the master to notice the exit", func() bool {
		return !slices.ContainsFunc(b.Children(), func(k pipes.ChildInfo) bool { return k.Alloc == old.Alloc })
	})
	if ports := b.Office().Owned(old.Alloc); ports != nil {
		t.Errorf("ports %v of the dead adopted child still leased", ports)
	}
	waitFor(t, 30*time.Second, "the instance to run again", func() bool {
		in := services(t, c, "svc")["svc.0"]
		return in != nil && in.State == needs.Running && in.Alloc != old.Alloc
	})
	if in := services(t, c, "svc")["svc.0"]; !strings.Contains(in.LastExit, "exited while adopted (status unknown)") {
		t.Errorf("last exit %q, want the adopted child's unknown status", in.LastExit)
	}
}

// TestStopAdoptedForker: stopping an adopted child that ignores SIGTERM and
// has forked a grandchild that ignores it too leaves nothing running.
func TestStopAdoptedForker(t *testing.T) {
	_, c, a, cfg := newPairWith(t, nil)
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	script := fmt.Sprintf(`trap "" TERM; sh -c 'trap "" TERM; exec sleep 600' & echo $! > %s; wait`, pidFile)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "forker", Command: []string{"sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	var gpid int
	waitFor(t, 30*time.Second, "the forker to run with its grandchild", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		gpid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && gpid > 0 && running(t, c, "forker") == 1
	})
	leader := a.Children()[0].PID
	t.Cleanup(func() { syscall.Kill(-leader, syscall.SIGKILL) })
	if err := a.Leave(); err != nil {
		t.Fatal(err)
	}
	b := openAgent(t, cfg)
	if kids := b.Children(); len(kids) != 1 || !kids[0].Adopted {
		t.Fatalf("children %+v, want the forker adopted", kids)
	}
	waitFor(t, 10*time.Second, "the master to link again", b.Linked)
	if err := c.RemoveNeed(t.Context(), "forker"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the leader and the grandchild to be gone", func() bool { return !alive(leader) && !alive(gpid) })
	waitFor(t, 10*time.Second, "the master to forget the child", func() bool { return len(b.Children()) == 0 })
}

// TestRepairSweep: a lease whose owner is no child is reclaimed by the
// periodic sweep; a live child's leases are kept.
func TestRepairSweep(t *testing.T) {
	_, c, a, _ := newPairWith(t, func(cfg *master.Config) { cfg.RepairInterval = "1s" })
	addNeed(t, c, a, "svc", 1, needs.HTTP)
	live := a.Children()[0]
	if _, err := a.Office().Lease("dead-owner-1", []needs.Protocol{needs.TCP, needs.HTTP}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the sweep to reclaim the dead owner's leases", func() bool { return a.Office().Owned("dead-owner-1") == nil })
	if got := a.Office().Owned(live.Alloc); !maps(got, live.Ports) {
		t.Errorf("live child's leases %v, want %v", got, live.Ports)
	}
}
