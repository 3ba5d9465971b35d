package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/needs"
	"berth/pipes"
)

// bin holds the paths of the binaries TestMain built.
var bin struct{ lanmanager, master, hello, gateway, gwservice, hotservice, rawexec, bwrap string }

// The test binary doubles as a dialler run inside a lab host (dialFrom):
// with dialHelperEnv set it dials that address and exits.
const (
	dialHelperEnv  = "E2E_DIAL_HELPER"
	dialTimeoutEnv = "E2E_DIAL_TIMEOUT_MS"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(dialHelperEnv); addr != "" {
		timeout, _ := strconv.Atoi(os.Getenv(dialTimeoutEnv))
		c, err := net.DialTimeout("tcp", addr, time.Duration(max(timeout, 1))*time.Millisecond)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "berth-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
		// Race-enabled binaries would otherwise linger 1 s at exit.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	args = append(args, "berth/cmd/lanmanager", "berth/cmd/master", "berth/examples/hello", "berth/examples/gateway", "berth/e2e/gwservice", "berth/e2e/hotservice",
		"berth/examples/driver-rawexec", "berth/cmd/berth-driver-bwrap")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bin.lanmanager, bin.master, bin.hello = filepath.Join(dir, "lanmanager"), filepath.Join(dir, "master"), filepath.Join(dir, "hello")
	bin.gateway, bin.gwservice = filepath.Join(dir, "gateway"), filepath.Join(dir, "gwservice")
	bin.hotservice = filepath.Join(dir, "hotservice")
	bin.rawexec = filepath.Join(dir, "driver-rawexec")
	bin.bwrap = filepath.Join(dir, "berth-driver-bwrap")
	// Lanmanagers say where their tokens are in a directory of this run,
	// never in the user's own.
	os.Setenv("BERTH_ANNOUNCE_DIR", filepath.Join(dir, "announce"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a daemon started by a test; Cleanup stops it.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc runs a binary with its output in a log file under dir.
func startProc(t *testing.T, dir, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t, 15*time.Second)
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s reported a data race", name)
		}
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, tail(b, 8000))
		}
	})
	return p
}

// stop sends SIGTERM and waits, then SIGKILL.
func (p *proc) stop(t *testing.T, grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		t.Errorf("%s did not exit within %s of SIGTERM; killing", p.cmd.Path, grace)
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort returns a loopback port that was free a moment ago, reserved
// from other tests until t ends (see internal/freeports).
func freePort(t *testing.T) int {
	t.Helper()
	return freeports.Port(t)
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUntil is waitFor for conditions that can say what is still off; the
// last such reason is in the failure.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lanEnv is a running lanmanager and the environment its clients need.
type lanEnv struct {
	addr  string
	token string
	dir   string
	proc  *proc
	// wrap prefixes every command run for this lanmanager, the server and
	// its clients (ip netns exec NS for a lanmanager in a namespace).
	wrap []string
	// serve holds the server's arguments, for restart.
	serve []string
	// starts counts the server's runs; each run has its own log.
	starts int
}

func startLan(t *testing.T, token string, extra ...string) *lanEnv {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l := &lanEnv{addr: addr, token: token, dir: t.TempDir()}
	l.start(t, extra...)
	waitFor(t, 10*time.Second, "lanmanager to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if token == "" && !slices.Contains(extra, "--insecure-no-token") {
		// Without --token the lanmanager made one and keeps it in its
		// data directory: use it, as a client of this machine would.
		b, err := os.ReadFile(filepath.Join(l.dir, "data", "token"))
		if err != nil {
			t.Fatalf("lanmanager started without --token: %v", err)
		}
		l.token = strings.TrimSpace(string(b))
	}
	return l
}

// tokenEnv passes the token, if any, as BERTH_TOKEN.
func (l *lanEnv) tokenEnv() []string {
	if l.token == "" {
		return nil
	}
	return []string{"BERTH_TOKEN=" + l.token}
}

// start runs `lanmanager serve` on l.addr with l.dir's data directory.
func (l *lanEnv) start(t *testing.T, extra ...string) {
	t.Helper()
	// No test binds the hub's default port: one that wants a hub gives
	// --ipc-listen with a port of its own.
	if !slices.Contains(extra, "--ipc-listen") {
		extra = append([]string{"--ipc-listen", "off"}, extra...)
	}
	if !slices.Contains(extra, "--gateway-listen") {
		extra = append([]string{"--gateway-listen", "off"}, extra...)
	}
	l.serve = append([]string{bin.lanmanager, "serve", "--listen", l.addr, "--data", filepath.Join(l.dir, "data")}, extra...)
	l.restart(t)
}

// restart starts the server again with the arguments of its first run; the
// previous run must have exited.
func (l *lanEnv) restart(t *testing.T) {
	t.Helper()
	l.starts++
	name := "lanmanager"
	if l.starts > 1 {
		name = fmt.Sprintf("lanmanager-%d", l.starts)
	}
	l.proc = startProc(t, l.dir, name, l.tokenEnv(), append(slices.Clone(l.wrap), l.serve...)...)
}

// kill9 kills the server with SIGKILL and waits for it to exit.
func (l *lanEnv) kill9() {
	l.proc.cmd.Process.Kill()
	<-l.proc.done
}

// cli runs the lanmanager client with this lanmanager's address and token.
func (l *lanEnv) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	argv := append(append(slices.Clone(l.wrap), bin.lanmanager), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "BERTH_ADDR=http://"+l.addr), l.tokenEnv()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("lanmanager %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (l *lanEnv) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.cli(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (l *lanEnv) services(t *testing.T) []*needs.Instance {
	t.Helper()
	var out []*needs.Instance
	if err := json.Unmarshal([]byte(l.mustCLI(t, "service", "ls", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (l *lanEnv) need(t *testing.T, name string) *needs.NeedStatus {
	t.Helper()
	var st needs.NeedStatus
	if err := json.Unmarshal([]byte(l.mustCLI(t, "need", "show", name, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// running returns the running instances of a need by instance name.
func (l *lanEnv) running(t *testing.T, need string) map[string]*needs.Instance {
	out := map[string]*needs.Instance{}
	for _, s := range l.services(t) {
		if s.Need == need && s.State == needs.Running {
			out[s.Name] = s
		}
	}
	return out
}

// masterEnv is a running master.
type masterEnv struct {
	name   string
	dir    string
	config string
	tcp    int
	http   int
	size   int
	proc   *proc
	// wrap prefixes the master's command (ip netns exec NS in a namespace).
	wrap []string
	// marker is the value of e2eMarkerEnv in the master's environment and
	// so in its children's: childProcs finds them by it.
	marker string
	// starts counts the master's runs; each run has its own log.
	starts int
}

// masterOpts says how to configure a master beyond its name and ranges.
type masterOpts struct {
	lanAddr   string         // default: the lanmanager's address
	advertise string         // default: 127.0.0.1
	wrap      []string       // command prefix
	extra     map[string]any // more masterconfig.json keys
}

// startMaster starts a master with tcp, http and ws ranges of size ports
// each, one after the other from a start picked at run time: no test
// assumes a fixed range is free on a busy machine.
func startMaster(t *testing.T, l *lanEnv, name string, size int) *masterEnv {
	t.Helper()
	base := freeports.Block(t, 3*size)
	return startMasterWith(t, l, name, base, base+size, size, masterOpts{})
}

// startMasterWith writes the master's config, starts it and waits until
// the lanmanager lists it as connected. Its children are killed when the
// test ends, whatever the master did with them.
func startMasterWith(t *testing.T, l *lanEnv, name string, tcpStart, httpStart, size int, o masterOpts) *masterEnv {
	t.Helper()
	dir := t.TempDir()
	m := &masterEnv{name: name, dir: dir, config: filepath.Join(dir, "masterconfig.json"), tcp: tcpStart, http: httpStart, size: size,
		wrap: o.wrap, marker: newMarker(name)}
	if o.lanAddr == "" {
		o.lanAddr = l.addr
	}
	if o.advertise == "" {
		o.advertise = "127.0.0.1"
	}
	cfg := map[string]any{
		"lanmanageraddress": o.lanAddr,
		"portrangestart":    map[string]int{"tcp": tcpStart, "http": httpStart, "ws": httpStart + size},
		"portrangesize":     size,
		"runtimedirectory":  "rt",
		"name":              name,
		"advertiseaddress":  o.advertise,
		"token":             l.token,
	}
	for k, v := range o.extra {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(m.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered before the master's own cleanup, so it runs after it.
	t.Cleanup(func() { killChildren(m.marker); removeCgroups(filepath.Join(dir, "rt")) })
	m.restart(t, l)
	return m
}

// restart starts the master (again) on its config and runtime directory and
// waits until the lanmanager lists it as connected. The previous run must
// have exited.
func (m *masterEnv) restart(t *testing.T, l *lanEnv) {
	t.Helper()
	m.starts++
	logName := "master-" + m.name
	if m.starts > 1 {
		logName = fmt.Sprintf("master-%s-%d", m.name, m.starts)
	}
	argv := append(slices.Clone(m.wrap), bin.master, "run", "--config", m.config)
	m.proc = startProc(t, m.dir, logName, []string{e2eMarkerEnv + "=" + m.marker}, argv...)
	waitFor(t, 20*time.Second, "master "+m.name+" to connect", func() bool { return l.connected(t, m.name) })
}

// kill9 kills the master process (not its children) with SIGKILL and
// waits for it to exit.
func (m *masterEnv) kill9() {
	m.proc.cmd.Process.Kill()
	<-m.proc.done
}

// connected reports whether the lanmanager lists the master name as
// connected.
func (l *lanEnv) connected(t *testing.T, name string) bool {
	m := l.master(t, name)
	return m != nil && m.Connected
}

// master returns the lanmanager's record of the master name, or nil.
func (l *lanEnv) master(t *testing.T, name string) *needs.Master {
	var ms []*needs.Master
	out, err := l.cli(t, "master", "ls", "--json")
	if err != nil || json.Unmarshal([]byte(out), &ms) != nil {
		return nil
	}
	for _, x := range ms {
		if x.Name == name {
			return x
		}
	}
	return nil
}

// ps lists the master's children through `master ps --json`.
func (m *masterEnv) ps(t *testing.T) []pipes.ChildInfo {
	t.Helper()
	out, err := exec.Command(bin.master, "ps", "--json", "--config", m.config).Output()
	if err != nil {
		t.Fatalf("master ps: %v", err)
	}
	var list []pipes.ChildInfo
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("master ps output %q: %v", out, err)
	}
	return list
}

func (m *masterEnv) inRange(p needs.Protocol, port int) bool {
	start := m.tcp
	if p == needs.HTTP {
		start = m.http
	}
	return port >= start && port < start+m.size
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func dialOK(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String(), nil
}

// addForker declares the need "forker", whose child forks a grandchild that
// ignores SIGTERM, waits for it to run, and returns the pids of the child
// (its group's leader) and of the grandchild.
func addForker(t *testing.T, l *lanEnv) (leader, grandchild int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	script := fmt.Sprintf(`sh -c 'trap "" TERM; exec sleep 600' & echo $! > %s; wait`, pidFile)
	l.mustCLI(t, "need", "add", "forker", "--", "sh", "-c", script)
	waitFor(t, 20*time.Second, "the grandchild to start and the instance to run", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		grandchild, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && grandchild > 0 && len(l.running(t, "forker")) == 1
	})
	return l.running(t, "forker")["forker.0"].PID, grandchild
}
