package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// requireAceBase turns the skips of the AceBase tests into failures
// (.ci/run sets it).
const requireAceBase = "BERTH_E2E_ACEBASE"

// aceBaseModules installs the npm packages of examples/acebase/package.json
// (acebase and ws, at their versions) into a directory of the test's and
// returns its node_modules with the path of node; it skips the test when
// Node, npm or the registry is missing, unless BERTH_E2E_ACEBASE=require.
func aceBaseModules(t *testing.T) (node, modules string) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(requireAceBase) == "require" {
			t.Fatalf("%s (%s=require)", msg, requireAceBase)
		}
		t.Skipf("%s; set %s=require to fail instead", msg, requireAceBase)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node not found: %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skip("npm not found: %v", err)
	}
	var pkg struct{ Dependencies map[string]string }
	b, err := os.ReadFile("../examples/acebase/package.json")
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil || pkg.Dependencies["acebase"] == "" || pkg.Dependencies["ws"] == "" {
		t.Fatalf("examples/acebase/package.json: %v, dependencies %v; want acebase and ws (AceBase's IPC client needs it)", err, pkg.Dependencies)
	}
	dir := t.TempDir()
	args := []string{"install", "--no-audit", "--no-fund", "--prefix", dir}
	for name, version := range pkg.Dependencies {
		args = append(args, name+"@"+version)
	}
	install := exec.CommandContext(t.Context(), npm, args...)
	if out, err := install.CombinedOutput(); err != nil {
		skip("npm %s (is the registry reachable?): %v\n%s", strings.Join(args, " "), err, out)
	}
	return node, filepath.Join(dir, "node_modules")
}

// TestAceBaseNeeds is docs/ipc.md's worked example, run: two unmodified
// AceBase processes (examples/acebase/peer.js) declared as berth needs
// that share the IPC group "chat" and one database. What one writes, the
// other is told of through the lanmanager's hub; GET /v1/ipc names both;
// a restart of the whole lanmanager costs them one reconnect, after which
// they go on sharing.
func TestAceBaseNeeds(t *testing.T) {
	node, modules := aceBaseModules(t)
	script, err := filepath.Abs("../examples/acebase/peer.js")
	if err != nil {
		t.Fatal(err)
	}
	ipcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l := startLan(t, "tok", "--ipc-listen", ipcAddr)
	startMaster(t, l, "m1", 5)
	db := t.TempDir()
	for _, role := range []string{"master", "worker"} {
		l.mustCLI(t, "need", "add", "ab-"+role, "--protocols", "http", "--ipc-group", "chat", "--env", "NODE_PATH="+modules,
			"--", node, script, db, role)
	}
	var url map[string]string
	waitFor(t, 60*time.Second, "both AceBase needs to run", func() bool {
		url = map[string]string{}
		for _, s := range l.services(t) {
			if s.State == needs.Running {
				url[s.Need] = fmt.Sprintf("http://%s:%d", s.Address, s.Ports[needs.HTTP])
			}
		}
		return len(url) == 2
	})
	peers := func() (bool, string) {
		out, err := l.cli(t, "ipc", "ls", "--json")
		if err != nil {
			return false, err.Error()
		}
		var st lan.IPCStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err.Error()
		}
		var got []string
		for _, g := range st.Groups {
			for _, p := range g.Peers {
				got = append(got, g.Name+"/"+p.Need+"/"+p.Instance)
			}
		}
		sort.Strings(got)
		return strings.Join(got, " ") == "chat/ab-master/ab-master.0 chat/ab-worker/ab-worker.0", fmt.Sprint(got)
	}
	dump := func() {
		for _, in := range []string{"ab-master.0", "ab-worker.0"} {
			out, err := l.cli(t, "logs", in)
			t.Logf("--- %s output (%v) ---\n%s", in, err, tail([]byte(out), 3000))
		}
	}
	if !t.Run("on the hub", func(t *testing.T) {
		waitUntil(t, 30*time.Second, "both processes on the hub, named by their instances", peers)
	}) {
		dump()
		t.FailNow()
	}
	watch := func() {
		t.Helper()
		for _, u := range url {
			if err := post(t.Context(), u+"/watch"); err != nil {
				t.Fatal(err)
			}
		}
	}
	shares := func(from, to string) {
		t.Helper()
		// What one process writes, the other reads from the database
		// (AceBase's locks go through the hub) and is told of by an event
		// (through the hub too). A write may fail while the processes
		// reconnect, and a subscription may not have reached the other
		// yet: write new values until one is seen, for a bounded time.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; ; i++ {
			v := fmt.Sprintf("%s-%d-%d", from, time.Now().UnixNano(), i)
			if err := post(t.Context(), url[from]+"/set?v="+v); err != nil {
				t.Logf("set on %s: %v", from, err)
			}
			for wait := time.Now().Add(time.Second); time.Now().Before(wait); time.Sleep(50 * time.Millisecond) {
				got, _ := httpGet(t.Context(), url[to]+"/get")
				if seen, _ := httpGet(t.Context(), url[to]+"/seen"); seen == v && got == v {
					t.Logf("what %s wrote reached %s after %d writes", from, to, i+1)
					return
				}
			}
			if time.Now().After(deadline) {
				dump()
				t.Fatalf("what %s wrote never reached %s through the hub (%d tries)", from, to, i+1)
			}
		}
	}
	watch()
	shares("ab-worker", "ab-master")
	shares("ab-master", "ab-worker")

	// The whole lanmanager restarts on the same address and data: the
	// AceBase clients reconnect by themselves (after 1 s) with the same
	// tokens.
	l.kill9()
	restarted := time.Now()
	l.restart(t)
	waitUntil(t, 30*time.Second, "both processes back on the hub", peers)
	t.Logf("both AceBase processes were back on the hub %s after the lanmanager restarted", time.Since(restarted).Round(10*time.Millisecond))
	shares("ab-worker", "ab-master")
	shares("ab-master", "ab-worker")
	for _, n := range []string{"ab-master", "ab-worker"} {
		for _, in := range l.need(t, n).InstanceList {
			if in.Restarts != 0 || in.State != needs.Running {
				t.Errorf("%s: %s after %d restarts; want running, never restarted", in.Name, in.State, in.Restarts)
			}
		}
	}
}

func post(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// TestIPCDefaultPortBusy: on a busy machine, a lanmanager whose hub's
// default port (9163 on the API's host) is taken says so and serves its
// API without a hub; a port given with --ipc-listen that is taken is an
// error naming the flag. The test holds 9163 itself, on a loopback
// address of its own, so it takes no port another program may hold.
func TestIPCDefaultPortBusy(t *testing.T) {
	var host string
	var held net.Listener
	for i := 0; held == nil; i++ {
		if i == 50 {
			t.Fatal("no 127.0.0.x address with port 9163 to hold")
		}
		host = fmt.Sprintf("127.0.%d.%d", 1+rand.IntN(250), 1+rand.IntN(250))
		held, _ = net.Listen("tcp", net.JoinHostPort(host, "9163"))
	}
	defer held.Close()
	api := net.JoinHostPort(host, fmt.Sprint(freePort(t)))
	l := &lanEnv{addr: api, dir: t.TempDir()}
	l.serve = []string{bin.lanmanager, "serve", "--listen", api, "--data", filepath.Join(l.dir, "data"), "--allowed-host", host, "--gateway-listen", "off"}
	l.restart(t)
	waitFor(t, 10*time.Second, "the lanmanager to say it runs without a hub", func() bool {
		b, _ := os.ReadFile(l.proc.log)
		return strings.Contains(string(b), "no IPC hub: its default address is in use") && strings.Contains(string(b), "lanmanager listening")
	})
	l.token = strings.TrimSpace(readFile(t, filepath.Join(l.dir, "data", "token")))
	if out, err := l.cli(t, "ipc", "ls"); err == nil || !strings.Contains(out+err.Error(), "--ipc-listen off") {
		t.Errorf("ipc ls without a hub: %v %s", err, out)
	}
	l.mustCLI(t, "need", "ls")

	cmd := exec.Command(bin.lanmanager, "serve", "--listen", net.JoinHostPort(host, fmt.Sprint(freePort(t))), "--data", t.TempDir(),
		"--ipc-listen", held.Addr().String(), "--gateway-listen", "off")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--ipc-listen "+held.Addr().String()) || !strings.Contains(string(out), "address already in use") {
		t.Errorf("serve with a taken --ipc-listen: %v\n%s", err, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
