package master_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/child"
	"berth/lan"
	"berth/master"
	"berth/needs"
	"berth/pipes"
)

// openNamedMaster opens a master named name on the lanmanager at lanAddr
// and waits until it links; it returns its config too.
func openNamedMaster(t *testing.T, lanAddr, name string) (*master.Agent, master.Config) {
	t.Helper()
	cfg := testConfig(t, lanAddr)
	cfg.Name = name
	a := openAgent(t, cfg)
	waitFor(t, 10*time.Second, name+" to link", a.Linked)
	return a, cfg
}

// childOf returns the child of instance on a, if it runs there.
func childOf(a *master.Agent, instance string) (pipes.ChildInfo, bool) {
	for _, k := range a.Children() {
		if k.Instance == instance {
			return k, true
		}
	}
	return pipes.ChildInfo{}, false
}

// childPort returns the address of instance's first port on a.
func childPort(t *testing.T, a *master.Agent, instance string) string {
	t.Helper()
	var k pipes.ChildInfo
	waitFor(t, 20*time.Second, instance+" on "+a.Name(), func() bool {
		var ok bool
		k, ok = childOf(a, instance)
		return ok && len(k.Ports) > 0
	})
	for _, p := range needs.Protocols {
		if port, ok := k.Ports[p]; ok {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
	}
	t.Fatalf("%s has no port", instance)
	return ""
}

// waitAnswer waits until a connection to addr answers want (hit, from
// ingress_test.go); it returns the last answer.
func waitAnswer(t *testing.T, addr, what string, want func(string) bool) string {
	t.Helper()
	var got string
	var err error
	waitFor(t, 20*time.Second, what, func() bool {
		got, err = hit(addr)
		return err == nil && want(got)
	})
	return got
}

// acceptsAndCloses checks that addr accepts a connection and closes it
// without a byte.
func acceptsAndCloses(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("upstream %s: %v, want it to accept", addr, err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("upstream %s with no running instance: read %d, %v; want EOF at once", addr, n, err)
	}
}

// TestUpstreamLegacyClient: a legacy client on m1, which only knows the
// host:port given in its arguments (${BERTH_UPSTREAM_DB}), reaches the
// instances of db on m2 through its upstream, round-robin; while db has no
// running instance (not declared yet, then scaled to 0) the upstream
// accepts and closes connections.
func TestUpstreamLegacyClient(t *testing.T) {
	srv, c := newLan(t)
	a1, cfg1 := openNamedMaster(t, srv.Addr(), "m1")
	a2, _ := openNamedMaster(t, srv.Addr(), "m2")
	exe, _ := os.Executable()
	one, two, zero := 1, 2, 0
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "app", Command: []string{exe, "legacy-client", "${BERTH_UPSTREAM_DB}"},
		Instances: &one, Protocols: []needs.Protocol{needs.HTTP}, Machine: "m1",
		Upstreams: []needs.Upstream{{Name: "db", Need: "db", Protocol: needs.TCP}}}); err != nil {
		t.Fatal(err)
	}
	app := childPort(t, a1, "app.0")
	// A child is listed with its leased ports before its upstream
	// listeners are open (busyports.sh saw it): wait for them.
	var k pipes.ChildInfo
	waitFor(t, 20*time.Second, "app.0's upstream db in ps", func() bool {
		k, _ = childOf(a1, "app.0")
		return len(k.Upstreams) == 1 && k.Upstreams[0].Error != ""
	})
	up := k.Upstreams[0]
	host, portS, err := net.SplitHostPort(up.Address)
	port, _ := strconv.Atoi(portS)
	if err != nil || host != "127.0.0.1" || up.Name != "db" || up.Need != "db" {
		t.Fatalf("upstream %+v, want db on 127.0.0.1", up)
	}
	for p, start := range cfg1.PortRangeStart {
		if port >= start && port < start+cfg1.PortRangeSize {
			t.Errorf("upstream port %d is in the %s lease range %d+%d", port, p, start, cfg1.PortRangeSize)
		}
	}
	if !strings.Contains(up.Error, "need db has no running instance") {
		t.Errorf("upstream error in ps %q, want it to say db has no running instance", up.Error)
	}
	acceptsAndCloses(t, up.Address)
	if got := waitAnswer(t, app, "app.0 to answer", func(string) bool { return true }); got != "error: EOF" {
		t.Errorf("app.0 through its upstream to a need that does not exist: %q, want error: EOF", got)
	}

	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "db", Command: []string{exe}, Instances: &two,
		Protocols: []needs.Protocol{needs.TCP}, Machine: "m2"}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "db", 2, a2)
	waitMirror(t, c, "db", 2, a1)
	got := map[string]int{}
	for range 6 {
		ans, err := hit(app)
		if err != nil {
			t.Fatal(err)
		}
		got[ans]++
	}
	wantEven(t, "app.0's upstream", got, names("db", 2), 3)
	waitFor(t, 5*time.Second, "ps to show the upstream's targets", func() bool {
		k, _ := childOf(a1, "app.0")
		return len(k.Upstreams) == 1 && k.Upstreams[0].Error == "" && k.Upstreams[0].Address == up.Address
	})

	if _, err := c.Scale(t.Context(), "db", zero); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, app, "the upstream to accept and close again once db has no instance", func(s string) bool { return s == "error: EOF" })
	acceptsAndCloses(t, up.Address)

	// The listener lives as long as the child.
	if _, err := c.Scale(t.Context(), "app", zero); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "app.0 gone", func() bool { _, ok := childOf(a1, "app.0"); return !ok })
	waitFor(t, 5*time.Second, "the upstream listener closed", func() bool {
		c, err := net.DialTimeout("tcp", up.Address, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// TestUpstreamFollowsTargetBalance: an upstream balances like its target
// need's ingress. db is balanced by hash of the client address, and every
// connection of app.0 through its upstream comes from 127.0.0.1, so all go
// to one instance of db (round-robin spreads them 3 and 3 in
// TestUpstreamLegacyClient). When db is removed and declared again
// round-robin, the listener follows.
func TestUpstreamFollowsTargetBalance(t *testing.T) {
	srv, c := newLan(t)
	a1, _ := openNamedMaster(t, srv.Addr(), "m1")
	a2, _ := openNamedMaster(t, srv.Addr(), "m2")
	exe, _ := os.Executable()
	one, two := 1, 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "db", Command: []string{exe}, Instances: &two,
		Protocols: []needs.Protocol{needs.TCP}, Machine: "m2", Balance: "hash"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "app", Command: []string{exe, "legacy-client", "${BERTH_UPSTREAM_DB}"},
		Instances: &one, Protocols: []needs.Protocol{needs.HTTP}, Machine: "m1",
		Upstreams: []needs.Upstream{{Name: "db", Need: "db", Protocol: needs.TCP}}}); err != nil {
		t.Fatal(err)
	}
	app := childPort(t, a1, "app.0")
	waitReady(t, c, "db", 2, a2)
	waitMirror(t, c, "db", 2, a1)
	waitFor(t, 10*time.Second, "m1 to hold db's balance", func() bool {
		tg, ok := a1.Mirror().Target("db")
		return ok && tg.Balance == "hash"
	})
	// The mirror holds the balance before the upstream's goroutine has
	// set it: poll until every connection lands on one instance, then
	// check it holds.
	waitFor(t, 10*time.Second, "app.0's upstream to stick to one instance of db", func() bool { return len(spread(t, app, 6)) == 1 })
	if got := spread(t, app, 6); len(got) != 1 {
		t.Fatalf("app.0's upstream to db balanced by hash: %v, want one instance", got)
	}

	zero := 0
	if _, err := c.Scale(t.Context(), "db", zero); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNeed(t.Context(), "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "db", Command: []string{exe}, Instances: &two,
		Protocols: []needs.Protocol{needs.TCP}, Machine: "m2"}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, "db", 2, a2)
	waitMirror(t, c, "db", 2, a1)
	waitFor(t, 10*time.Second, "m1 to hold db's round-robin", func() bool {
		tg, ok := a1.Mirror().Target("db")
		return ok && tg.Balance == ""
	})
	waitFor(t, 10*time.Second, "app.0's upstream to spread again", func() bool { return len(spread(t, app, 6)) == 2 })
	wantEven(t, "app.0's upstream, round-robin again", spread(t, app, 6), names("db", 2), 3)
}

// TestUpstreamResource: an upstream to a need balanced by resource gets
// the heartbeats of the target's instances on its master, as ingress
// does: hot.0 burns a core, and app.0's connections through its upstream
// go to hot.1.
func TestUpstreamResource(t *testing.T) {
	srv, c := newLan(t)
	a, _ := openNamedMaster(t, srv.Addr(), "m1")
	exe, _ := os.Executable()
	one, two := 1, 2
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "hot", Command: []string{exe}, Instances: &two,
		Protocols: []needs.Protocol{needs.TCP}, Env: map[string]string{"AGENT_TEST_BURN": "hot.0"}, Balance: "resource"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "app", Command: []string{exe, "legacy-client", "${BERTH_UPSTREAM_HOT}"},
		Instances: &one, Protocols: []needs.Protocol{needs.HTTP},
		Upstreams: []needs.Upstream{{Name: "hot", Need: "hot", Protocol: needs.TCP}}}); err != nil {
		t.Fatal(err)
	}
	app := childPort(t, a, "app.0")
	waitReady(t, c, "hot", 2, a)
	waitMirror(t, c, "hot", 2, a)
	cpu := func(instance string) float64 { return childCPU(a, instance) }
	waitFor(t, 20*time.Second, "hot.0's heartbeats to show it busy and hot.1's idle", func() bool {
		return cpu("hot.0") > 30 && cpu("hot.1") >= 0 && cpu("hot.1") < cpu("hot.0")/2
	})
	// The upstream gets the figures within a second (statsEvery): wait
	// until hot.1 answers four times in a row, then count.
	waitFor(t, 20*time.Second, "app.0's upstream to prefer hot.1", func() bool { return spread(t, app, 4)["hot.1"] == 4 })
	got := spread(t, app, 20)
	t.Logf("20 connections: %v (hot.0 at %.0f%% CPU, hot.1 at %.0f%%)", got, cpu("hot.0"), cpu("hot.1"))
	if got["hot.0"] > 4 {
		t.Errorf("20 connections through the upstream went %v: the busy hot.0 got more than 4", got)
	}
}

// report asks a mesh-child at addr for its meshReport.
func report(addr string) (meshReport, error) {
	var r meshReport
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return r, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(line, &r)
}

// runningNames is the lanmanager's running instances of need, sorted.
func runningNames(t *testing.T, c *lan.Client, need string) []string {
	ins, err := c.Services(t.Context())
	if err != nil {
		return nil
	}
	out := []string{}
	for _, in := range ins {
		if in.Need == need && in.State == needs.Running && !in.Removing {
			out = append(out, in.Name)
		}
	}
	slices.Sort(out)
	return out
}

// waitPeers waits until every running instance of need, on any of the
// agents, has a peers file, a last change and a peers list all equal to
// want; it returns their reports by instance.
func waitPeers(t *testing.T, c *lan.Client, need string, want []string, agents ...*master.Agent) map[string]meshReport {
	t.Helper()
	var reps map[string]meshReport
	var why string
	defer func() {
		if t.Failed() {
			t.Logf("last seen: %s", why)
		}
	}()
	waitFor(t, 30*time.Second, fmt.Sprintf("peers of %s to be %v everywhere", need, want), func() bool {
		if got := runningNames(t, c, need); !slices.Equal(got, want) {
			why = fmt.Sprintf("running %v", got)
			return false
		}
		reps = map[string]meshReport{}
		for _, a := range agents {
			for _, k := range a.Children() {
				if n, _, _ := needs.ParseInstanceName(k.Instance); n != need || k.State != "running" {
					continue
				}
				r, err := report(net.JoinHostPort("127.0.0.1", strconv.Itoa(k.Ports[needs.HTTP])))
				if err != nil {
					why = fmt.Sprintf("%s: %v", k.Instance, err)
					return false
				}
				last, file := slices.Sorted(slices.Values(r.Last)), slices.Sorted(slices.Values(r.File))
				if !slices.Equal(last, want) || !slices.Equal(file, want) {
					why = fmt.Sprintf("%s: last message %v, file %v (%s)", k.Instance, r.Last, r.File, r.FileErr)
					return false
				}
				reps[k.Instance] = r
			}
		}
		if len(reps) != len(want) {
			why = fmt.Sprintf("%d children report", len(reps))
			return false
		}
		return true
	})
	return reps
}

// TestPeersFollowScale: with --peers --peers-signal HUP, the peers file
// of each child (mode 0600, replaced whole) and its change messages list
// its need's running instances on both masters, through a scale up and a
// scale down, and each change of peers sends the child SIGHUP.
func TestPeersFollowScale(t *testing.T) {
	srv, c := newLan(t)
	a1, _ := openNamedMaster(t, srv.Addr(), "m1")
	a2, _ := openNamedMaster(t, srv.Addr(), "m2")
	agents := []*master.Agent{a1, a2}
	exe, _ := os.Executable()
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{exe, "mesh-child"}, Instances: &one,
		Protocols: []needs.Protocol{needs.HTTP}, Peers: true, PeersSignal: "HUP"}); err != nil {
		t.Fatal(err)
	}
	first := waitPeers(t, c, "web", []string{"web.0"}, agents...)["web.0"]
	if first.Readies != 1 {
		t.Errorf("web.0 got %d ready messages, want 1", first.Readies)
	}

	if _, err := c.Scale(t.Context(), "web", 3); err != nil {
		t.Fatal(err)
	}
	up := waitPeers(t, c, "web", names("web", 3), agents...)
	if r := up["web.0"]; r.Changes < 1 || r.Signals < 1 {
		t.Errorf("web.0 after the scale up: %d changes, %d signals; want at least one of each", r.Changes, r.Signals)
	}
	// The files: mode 0600, nothing left of the temporary files.
	for _, a := range agents {
		for _, k := range a.Children() {
			if k.PeersFile == "" {
				t.Fatalf("%s has no peers file in ps", k.Instance)
			}
			fi, err := os.Stat(k.PeersFile)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s's peers file: %v, %v; want mode 0600", k.Instance, fi, err)
			}
			ents, _ := os.ReadDir(filepath.Dir(k.PeersFile))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".tmp-") {
					t.Errorf("temporary file %s left next to the peers files", e.Name())
				}
			}
			ps, err := child.ReadPeers(k.PeersFile)
			if err != nil || len(ps) != 3 {
				t.Fatalf("%s's peers file: %+v, %v", k.Instance, ps, err)
			}
			for _, p := range ps {
				if p.Master != "m1" && p.Master != "m2" || p.Address != "127.0.0.1" || p.Ports[needs.HTTP] == 0 {
					t.Errorf("peer %+v: want its master, address and http port", p)
				}
			}
		}
	}

	if _, err := c.Scale(t.Context(), "web", 1); err != nil {
		t.Fatal(err)
	}
	down := waitPeers(t, c, "web", []string{"web.0"}, agents...)
	if r := down["web.0"]; r.Changes <= up["web.0"].Changes || r.Signals <= up["web.0"].Signals {
		t.Errorf("web.0 after the scale down: %d changes, %d signals; want more than %d and %d",
			r.Changes, r.Signals, up["web.0"].Changes, up["web.0"].Signals)
	}
	if r := down["web.0"]; len(r.Errors) != 0 {
		t.Errorf("web.0 got errors %v", r.Errors)
	}
}

// TestUpstreamMessages: a child using the SDK gets ready with its
// upstream's address (the one in its environment), an error naming the
// need while that need has no running instance, a change listing the
// targets once it has, and close when it is stopped. The removed peers
// file and the closed listener show the child's end.
func TestUpstreamMessages(t *testing.T) {
	srv, c := newLan(t)
	a, _ := openNamedMaster(t, srv.Addr(), "m1")
	exe, _ := os.Executable()
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "app", Command: []string{exe, "mesh-child"}, Instances: &one,
		Protocols: []needs.Protocol{needs.HTTP}, Upstreams: []needs.Upstream{{Name: "cache-1", Need: "cache", Protocol: needs.TCP}}}); err != nil {
		t.Fatal(err)
	}
	addr := childPort(t, a, "app.0")
	var r meshReport
	waitFor(t, 20*time.Second, "app.0's ready and error", func() bool {
		var err error
		r, err = report(addr)
		return err == nil && r.Readies == 1 && len(r.Errors) > 0
	})
	k, _ := childOf(a, "app.0")
	if r.Upstream == "" || len(k.Upstreams) != 1 || r.Upstream != k.Upstreams[0].Address {
		t.Errorf("ready's upstream %q, ps %+v; want the same address", r.Upstream, k.Upstreams)
	}
	if env := readEnv(t, k.PID); env["BERTH_UPSTREAM_CACHE_1"] != r.Upstream {
		t.Errorf("BERTH_UPSTREAM_CACHE_1=%q, ready says %q", env["BERTH_UPSTREAM_CACHE_1"], r.Upstream)
	}
	if len(r.Targets) != 0 || !strings.Contains(r.Errors[0], "need cache has no running instance") {
		t.Errorf("targets %v, errors %v; want none and an error naming cache", r.Targets, r.Errors)
	}
	if r.File != nil || k.PeersFile != "" {
		t.Errorf("a need without peers has a peers file: %v %q", r.File, k.PeersFile)
	}

	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "cache", Command: []string{exe}, Instances: &one,
		Protocols: []needs.Protocol{needs.TCP}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a change listing cache.0", func() bool {
		var err error
		r, err = report(addr)
		return err == nil && slices.Equal(r.Targets, []string{"cache.0"})
	})
	if r.Changes < 1 || len(r.Errors) != 1 {
		t.Errorf("%d changes, errors %v; want a change and still the one error", r.Changes, r.Errors)
	}
	if got := askLineTest(t, r.Upstream); got != "cache.0" {
		t.Errorf("through the upstream: %q, want cache.0", got)
	}

	// Scaled away: close, then the listener goes with the child.
	if _, err := c.Scale(t.Context(), "app", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "app.0 gone", func() bool { _, ok := childOf(a, "app.0"); return !ok })
	log, err := os.ReadFile(k.Log)
	if err != nil || !strings.Contains(string(log), "event close ") {
		t.Errorf("app.0's log has no close event (%v):\n%s", err, log)
	}
	// The child's mesh goroutine closes its listeners once the child is
	// gone, which is after the child has left a.children.
	waitFor(t, 10*time.Second, "upstream "+r.Upstream+" to refuse after its child is gone", func() bool {
		conn, err := net.DialTimeout("tcp", r.Upstream, time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

// askLineTest dials addr and returns its first line.
func askLineTest(t *testing.T, addr string) string {
	t.Helper()
	got, err := hit(addr)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// readEnv reads a process's environment.
func readEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// TestUpstreamAdoptedKeepsPort: after a master restart (Leave, Open) the
// adopted legacy client's upstream listens on the same port again (its
// environment cannot change) and still leads to db. A port taken by
// another process meanwhile is shown in ps with its error and re-opened
// once freed.
func TestUpstreamAdoptedKeepsPort(t *testing.T) {
	srv, c := newLan(t)
	a, cfg := openNamedMaster(t, srv.Addr(), "m1")
	exe, _ := os.Executable()
	one := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "db", Command: []string{exe}, Instances: &one,
		Protocols: []needs.Protocol{needs.TCP}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "app", Command: []string{exe, "legacy-client", "${BERTH_UPSTREAM_DB}"},
		Instances: &one, Protocols: []needs.Protocol{needs.HTTP},
		Upstreams: []needs.Upstream{{Name: "db", Need: "db", Protocol: needs.TCP}}}); err != nil {
		t.Fatal(err)
	}
	app := childPort(t, a, "app.0")
	waitAnswer(t, app, "app.0 to reach db.0", func(s string) bool { return s == "db.0" })
	k, _ := childOf(a, "app.0")
	upAddr := k.Upstreams[0].Address

	for round, squat := range []bool{false, true} {
		if err := a.Leave(); err != nil {
			t.Fatal(err)
		}
		var squatter net.Listener
		if squat {
			var err error
			if squatter, err = net.Listen("tcp", upAddr); err != nil {
				t.Fatalf("round %d: the upstream port is still taken after Leave: %v", round, err)
			}
		}
		a = openAgent(t, cfg)
		k, ok := childOf(a, "app.0")
		if !ok || !k.Adopted || k.PID == 0 {
			t.Fatalf("round %d: app.0 not adopted: %+v", round, k)
		}
		if squat {
			waitFor(t, 10*time.Second, "ps to show the upstream that cannot listen", func() bool {
				k, _ := childOf(a, "app.0")
				return len(k.Upstreams) == 1 && k.Upstreams[0].Address == "" && strings.Contains(k.Upstreams[0].Error, "cannot listen")
			})
			squatter.Close()
		}
		waitFor(t, 20*time.Second, "the adopted child's upstream on its port again", func() bool {
			k, _ := childOf(a, "app.0")
			return len(k.Upstreams) == 1 && k.Upstreams[0].Address == upAddr
		})
		if env := readEnv(t, k.PID); env["BERTH_UPSTREAM_DB"] != upAddr {
			t.Fatalf("BERTH_UPSTREAM_DB=%q, want %q", env["BERTH_UPSTREAM_DB"], upAddr)
		}
		waitAnswer(t, app, fmt.Sprintf("round %d: the adopted app.0 to reach db.0", round), func(s string) bool { return s == "db.0" })
	}
}
