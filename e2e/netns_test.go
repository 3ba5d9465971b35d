package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A multi-machine harness: each host is a network namespace the test
// creates, with its own eth0 on a bridge that lives in one more namespace
// of the test's; nothing is added to the root namespace. Hosts get
// addresses from labSubnet, a private /24 that exists only inside those
// namespaces, so the tests' traffic goes to them and to loopback only.
//
// The binaries run inside with `ip netns exec NS binary ...`. Unix sockets
// are files, so `master ps` works from outside; TCP does not cross, so the
// lanmanager client runs inside the lanmanager's namespace.

// labSubnet is the first three octets of the lab's /24.
const labSubnet = "10.213.77"

// labPrefix starts every namespace name, followed by the test binary's pid,
// so that namespaces a killed run left behind can be found and removed.
const labPrefix = "berth-e2e-"

var labSeq atomic.Int64

// netLab is the set of namespaces of one test.
type netLab struct {
	t      *testing.T
	id     string // labPrefix + pid + "-" + seq
	bridge string // the bridge's namespace
	hosts  []*labHost
}

// labHost is one machine of the lab.
type labHost struct {
	name string // short name: "lan", "m1", ...
	ns   string // namespace name
	ip   string // eth0's address
}

// wrap is the prefix that runs a command on the host.
func (h *labHost) wrap() []string { return []string{"ip", "netns", "exec", h.ns} }

// requireNetnsEnv set to "require" (as .ci/run does where it runs as root)
// turns the namespace tests' skip into a failure.
const requireNetnsEnv = "BERTH_E2E_NETNS"

// newNetLab creates a bridge namespace and one namespace per host name, or
// skips the test when namespaces cannot be made here. Everything is
// removed when the test ends: every process in the namespaces is killed
// first.
func newNetLab(t *testing.T, names ...string) *netLab {
	t.Helper()
	skip := t.Skipf
	if os.Getenv(requireNetnsEnv) == "require" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("network namespace tests need root (ip netns add); run as root, as .ci/run does")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("network namespace tests need the ip command (Debian: apt-get install iproute2); .ci/run installs it")
	}
	removeStaleNamespaces(t)
	lab := &netLab{t: t, id: fmt.Sprintf("%s%d-%d", labPrefix, os.Getpid(), labSeq.Add(1))}
	lab.bridge = lab.id + "-br"
	if out, err := exec.Command("ip", "netns", "add", lab.bridge).CombinedOutput(); err != nil {
		skip("cannot create a network namespace here (ip netns add: %v: %s); the namespace tests need root with CAP_SYS_ADMIN", err, bytes.TrimSpace(out))
	}
	t.Cleanup(lab.destroy)
	lab.ip("-n", lab.bridge, "link", "add", "br0", "type", "bridge")
	lab.ip("-n", lab.bridge, "link", "set", "br0", "up")
	lab.ip("-n", lab.bridge, "link", "set", "lo", "up")
	for i, name := range names {
		h := &labHost{name: name, ns: lab.id + "-" + name, ip: fmt.Sprintf("%s.%d", labSubnet, i+1)}
		lab.ip("netns", "add", h.ns)
		lab.hosts = append(lab.hosts, h)
		port := "p-" + name // the bridge's end; names are unique within the bridge namespace
		lab.ip("-n", h.ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", lab.bridge)
		lab.ip("-n", lab.bridge, "link", "set", port, "master", "br0")
		lab.ip("-n", lab.bridge, "link", "set", port, "up")
		lab.ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		lab.ip("-n", h.ns, "link", "set", "eth0", "up")
		lab.ip("-n", h.ns, "link", "set", "lo", "up")
	}
	return lab
}

// host returns the host named name.
func (lab *netLab) host(name string) *labHost {
	for _, h := range lab.hosts {
		if h.name == name {
			return h
		}
	}
	lab.t.Fatalf("no host %q in the lab", name)
	return nil
}

// ip runs the ip command and fails the test if it fails.
func (lab *netLab) ip(args ...string) {
	lab.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		lab.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pids lists the processes in the host's namespace.
func (h *labHost) pids() ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", h.ns).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %v", h.ns, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killAll SIGKILLs every process in the host's namespace until none is
// left (a process may be forking while the first round runs).
func (lab *netLab) killAll(h *labHost) {
	lab.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := h.pids()
		if err != nil {
			lab.t.Errorf("kill host %s: %v", h.name, err)
			return
		}
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			lab.t.Errorf("kill host %s: processes %v still there after 10 s", h.name, pids)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// partition takes the host's eth0 down: its packets go nowhere, as when a
// cable is pulled. Its processes go on running.
func (lab *netLab) partition(h *labHost) { lab.ip("-n", h.ns, "link", "set", "eth0", "down") }

// heal brings the host's eth0 back up.
func (lab *netLab) heal(h *labHost) { lab.ip("-n", h.ns, "link", "set", "eth0", "up") }

// powerCut is a machine that vanishes: its cable is pulled first, so that
// nothing it sends on the way down (the kernel's FIN for its closed
// sockets) reaches anyone, then every process on it is killed with
// SIGKILL. restore brings the cable back; the test starts its master again.
func (lab *netLab) powerCut(h *labHost) {
	lab.partition(h)
	lab.killAll(h)
}

// destroy kills every process in the lab's namespaces and deletes them.
func (lab *netLab) destroy() {
	for _, h := range lab.hosts {
		lab.killAll(h)
		if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil {
			lab.t.Errorf("ip netns del %s: %v: %s", h.ns, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", lab.bridge).CombinedOutput(); err != nil {
		lab.t.Errorf("ip netns del %s: %v: %s", lab.bridge, err, out)
	}
}

// removeStaleNamespaces deletes the namespaces of test binaries that died
// without cleaning up (their pid is gone), after killing what runs there.
func removeStaleNamespaces(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], labPrefix) {
			continue
		}
		ns := f[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(ns, labPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if pout, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, p := range strings.Fields(string(pout)) {
				if n, err := strconv.Atoi(p); err == nil {
					syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		if err := exec.Command("ip", "netns", "del", ns).Run(); err == nil {
			t.Logf("removed namespace %s left by an earlier run", ns)
		}
	}
}

// labCluster is a lanmanager and masters, each on its own host of a lab.
type labCluster struct {
	lab     *netLab
	lan     *lanEnv
	masters []*masterEnv
	hostOf  map[string]*labHost // master name -> host
}

// labPort is the lanmanager's port on its host.
const labPort = 23552

// newLabCluster creates hosts "lan" and one per master name, runs a
// lanmanager with lanArgs on "lan" and a master on each other host, and
// waits until every master is connected. Each master gets the same port
// ranges (they are separate machines); masterExtra adds config keys.
func newLabCluster(t *testing.T, lanArgs []string, masterExtra map[string]any, masterNames ...string) *labCluster {
	t.Helper()
	lab := newNetLab(t, append([]string{"lan"}, masterNames...)...)
	lh := lab.host("lan")
	l := &lanEnv{addr: fmt.Sprintf("%s:%d", lh.ip, labPort), token: "lab-token", dir: t.TempDir(), wrap: lh.wrap()}
	l.start(t, lanArgs...)
	waitFor(t, 10*time.Second, "lanmanager to answer in its namespace", func() bool {
		_, err := l.cli(t, "need", "ls")
		return err == nil
	})
	c := &labCluster{lab: lab, lan: l, hostOf: map[string]*labHost{}}
	for _, name := range masterNames {
		h := lab.host(name)
		c.hostOf[name] = h
		c.masters = append(c.masters, startMasterWith(t, l, name, 21000, 22000, 100,
			masterOpts{lanAddr: l.addr, advertise: h.ip, wrap: h.wrap(), extra: masterExtra}))
	}
	return c
}

// master returns the master named name.
func (c *labCluster) master(name string) *masterEnv {
	for _, m := range c.masters {
		if m.name == name {
			return m
		}
	}
	c.lab.t.Fatalf("no master %q", name)
	return nil
}

// realRunning maps each live child of need, on any master, to the master
// it runs on: what really runs, whatever berth says.
func (c *labCluster) realRunning(need string) map[int]string {
	out := map[int]string{}
	for _, m := range c.masters {
		for pid, p := range leaders(m.marker) {
			if p.need == need {
				out[pid] = m.name
			}
		}
	}
	return out
}

// settled reports whether need has want running instances by the
// lanmanager and exactly those processes run, each on the master the
// lanmanager names, with the allocation it names; why says what is off.
func (c *labCluster) settled(t *testing.T, need string, want int) (ok bool, why string) {
	run := c.lan.running(t, need)
	if len(run) != want {
		return false, fmt.Sprintf("lanmanager reports %d running, want %d", len(run), want)
	}
	real := map[int]childProc{}
	realOn := map[int]string{}
	for _, m := range c.masters {
		for pid, p := range leaders(m.marker) {
			if p.need == need {
				real[pid], realOn[pid] = p, m.name
			}
		}
	}
	if len(real) != want {
		return false, fmt.Sprintf("%d processes of %s really run, want %d: %v", len(real), need, want, realOn)
	}
	for name, s := range run {
		p, ok := real[s.PID]
		if !ok || realOn[s.PID] != s.Master || p.alloc != s.Alloc || p.instance != name {
			return false, fmt.Sprintf("%s: lanmanager says pid %d alloc %s on %s; the process there: %+v on %q", name, s.PID, s.Alloc, s.Master, p, realOn[s.PID])
		}
	}
	return true, ""
}

// waitSettled polls settled until it holds and returns how long that took.
func (c *labCluster) waitSettled(t *testing.T, need string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitUntil(t, timeout, need+" to settle", func() (bool, string) { return c.settled(t, need, want) })
	return time.Since(start)
}

// dialFrom dials addr over TCP from inside the host's namespace, through
// a copy of the test binary started there (see dialHelperEnv): the test
// process itself never enters a namespace nor dials a lab address.
func (h *labHost) dialFrom(addr string, timeout time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", h.ns, self)
	cmd.Env = append(os.Environ(), dialHelperEnv+"="+addr, fmt.Sprintf("%s=%d", dialTimeoutEnv, timeout.Milliseconds()))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dial %s from %s: %v: %s", addr, h.name, err, bytes.TrimSpace(out))
	}
	return nil
}

// TestNetLab checks the harness itself: hosts reach one another over the
// bridge, a partitioned host reaches no one until healed, the root
// namespace has none of it, and killAll leaves a namespace empty.
func TestNetLab(t *testing.T) {
	lab := newNetLab(t, "a", "b")
	a, b := lab.host("a"), lab.host("b")
	addr := net.JoinHostPort(b.ip, "8080")
	srv := exec.Command("ip", "netns", "exec", b.ns, bin.hello)
	srv.Env = append(os.Environ(), "BERTH_HOST="+b.ip, "BERTH_PORT_HTTP=8080")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	waitFor(t, 10*time.Second, "a to reach b's server over the bridge", func() bool { return a.dialFrom(addr, time.Second) == nil })
	lab.partition(b)
	if err := a.dialFrom(addr, 500*time.Millisecond); err == nil {
		t.Fatal("a still reaches b while b's eth0 is down")
	}
	lab.heal(b)
	waitFor(t, 10*time.Second, "a to reach b again after heal", func() bool { return a.dialFrom(addr, time.Second) == nil })
	if pids, _ := b.pids(); len(pids) != 1 || pids[0] != srv.Process.Pid {
		t.Fatalf("b runs %v, want only the server %d", pids, srv.Process.Pid)
	}
	lab.killAll(b)
	if pids, _ := b.pids(); len(pids) != 0 {
		t.Fatalf("b still runs %v after killAll", pids)
	}
	<-done
	// Nothing of the lab is in the root namespace.
	out, _ := exec.Command("ip", "-o", "link").Output()
	if strings.Contains(string(out), "p-a") || strings.Contains(string(out), "br0") {
		t.Errorf("the root namespace has a lab link:\n%s", out)
	}
}
