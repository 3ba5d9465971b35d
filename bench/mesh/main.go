// Command mesh measures berth's ingress against HAProxy and against a
// backend reached directly, in one run on this machine (issue 10): the
// same wrk load, first over keep-alive connections, then with one request
// per connection. It starts a real lanmanager and master (the binaries in
// -bin), a need of 2 instances of examples/hello published with --ingress,
// and HAProxy in mode tcp, round-robin over the same 2 instances. For each
// target it prints requests/s, p50 and p99 latency (wrk --latency), the
// proxy's CPU per request (user + system time of the proxy's process from
// /proc, over the run: the master's for berth, haproxy's for HAProxy), and
// the ratios berth/HAProxy and berth/direct; and where the rest of the
// machine's time went, per request: wrk's CPU, the two backends' and the
// cores left idle (/proc/stat). With -rounds N the legs run N times,
// HAProxy and berth in turn first, and the ratios are also given as
// medians: one round's ratio moves by a tenth or more with the machine. Every port is picked at run
// time; everything listens on 127.0.0.1. bench/mesh.sh builds the binaries
// and installs haproxy and wrk when missing. -haproxy-smart-connect gives
// HAProxy's backend option tcp-smart-connect, its counterpart of what
// berth does for http (mesh.Config.ClientFirst); HAProxy applies it only
// when the client's data is there before it connects, which in mode tcp
// is seldom, so it changes little here.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin      string
	duration time.Duration
	conns    int
	threads  int
	keep     bool
	profile  string // the master's CPU profile, over its whole run
	rounds   int    // rounds of the legs; the ratios are then medians
	smart    bool   // HAProxy's backend with option tcp-smart-connect, as berth dials http
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "directory holding lanmanager, master and hello (bench/mesh.sh builds them)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run")
	flag.IntVar(&o.conns, "conns", 32, "wrk connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs)")
	flag.StringVar(&o.profile, "cpuprofile", "", "write the master's CPU profile (its whole run; the berth legs are nearly all of it) to this file")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of the legs, HAProxy and berth in turn first; with more than one, the ratios of each round and their medians")
	flag.BoolVar(&o.smart, "haproxy-smart-connect", false, "give HAProxy's backend option tcp-smart-connect (off by default; in mode tcp it seldom applies)")
	flag.Parse()
	if o.bin == "" || flag.NArg() > 0 || o.rounds < 1 || o.rounds > 100 || o.duration <= 0 || o.conns < 1 || o.threads < 1 {
		fmt.Fprintln(os.Stderr, "usage: mesh -bin DIR [-duration 10s] [-conns 32] [-threads 2] [-rounds 1 (1-100)] [-keep] [-cpuprofile FILE] [-haproxy-smart-connect]")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/mesh:", err)
		os.Exit(1)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeBlock finds n consecutive ports that bind now, outside the
// kernel's ephemeral range, from a random-ish start.
func freeBlock(n int) (int, error) {
	for start := 20000 + (os.Getpid()*37)%10000; start < 32000; start += n {
		ok := true
		for p := start; p < start+n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return start, nil
		}
	}
	return 0, errors.New("no free block of ports in 20000-32000")
}

type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func start(dir, name string, args ...string) (*daemon, error) {
	log := filepath.Join(dir, name+".log")
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	return &daemon{name: name, cmd: cmd, log: log}, nil
}

func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// machine is the time the machine's cores have spent busy and idle
// (iowait counted idle) so far, from the first line of /proc/stat.
func machine() (busy, idle time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var t [8]int64
	for i := range t {
		if t[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %v", err)
		}
	}
	// user nice system idle iowait irq softirq steal, in 10 ms ticks
	tick := 10 * time.Millisecond
	return time.Duration(t[0]+t[1]+t[2]+t[5]+t[6]+t[7]) * tick, time.Duration(t[3]+t[4]) * tick, nil
}

// switches is the context switches of every thread of the processes so
// far, voluntary and not (/proc/PID/task/*/status); threads that ended are
// not counted.
func switches(pids []int) (int64, error) {
	var n int64
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return 0, err
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
			if err != nil {
				continue // the thread ended meanwhile
			}
			for line := range strings.Lines(string(b)) {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					if err != nil {
						return 0, fmt.Errorf("/proc/%d/task/%s/status: %s: %v", pid, t.Name(), k, err)
					}
					n += c
				}
			}
		}
	}
	return n, nil
}

// cpuSum is the user + system time of processes so far.
func cpuSum(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		c, err := cpu(pid)
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

// cpu is the user + system time of a process so far.
func cpu(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// median is the middle of xs (the mean of the two middle ones for an even
// count); xs is not changed.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timed out waiting for %s (%v)", what, last)
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	requests int64
	errors   int64
	cpuPer   time.Duration // proxy CPU per request; 0 for direct
	// Where the rest of the machine's time went, per request: wrk's CPU,
	// the backends' (both instances), and the cores left idle.
	wrkPer, backendsPer, idlePer time.Duration
	// Context switches per request (voluntary and not, every thread):
	// how often the backends and the proxy went to sleep and woke.
	backendSwitches, proxySwitches float64
}

var (
	reqRE  = regexp.MustCompile(`(\d+) requests in`)
	rpsRE  = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	latRE  = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$`)
	errRE  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	non2RE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseDur(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	}
	return time.Duration(f * float64(time.Second))
}

// parseWrk reads requests, requests/s, the 50% and 99% latencies and the
// errors (socket errors and non-2xx/3xx answers) from wrk --latency.
func parseWrk(s string) (result, error) {
	var r result
	if m := reqRE.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := rpsRE.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range latRE.FindAllStringSubmatch(s, -1) {
		if m[1] == "50" {
			r.p50 = parseDur(m[2], m[3])
		} else {
			r.p99 = parseDur(m[2], m[3])
		}
	}
	if m := errRE.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.errors += n
		}
	}
	if m := non2RE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	if r.requests == 0 || r.rps == 0 || r.p50 == 0 || r.p99 == 0 {
		return r, errors.New("no requests, rate or latencies in its output")
	}
	return r, nil
}

// load runs wrk against url; close makes every request a new connection.
// Besides wrk's figures it measures, over the run, the CPU of the proxy
// (proxyPID, 0 for none), of the backends and of wrk, and the cores'
// idle time.
func load(o options, url string, close bool, proxyPID int, backendPIDs []int) (result, error) {
	args := []string{"-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.conns), "-d", o.duration.String(), "--latency"}
	if close {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, url)
	var proxyPIDs []int
	if proxyPID > 0 {
		proxyPIDs = []int{proxyPID}
	}
	before, err := measure(proxyPIDs, backendPIDs)
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command("wrk", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk %s: %v\n%s", url, err, out)
	}
	after, err := measure(proxyPIDs, backendPIDs)
	if err != nil {
		return result{}, err
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, fmt.Errorf("wrk %s: %v:\n%s", url, err, out)
	}
	n := time.Duration(r.requests)
	r.cpuPer = (after.proxyCPU - before.proxyCPU) / n
	r.wrkPer = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()) / n
	r.backendsPer = (after.backendsCPU - before.backendsCPU) / n
	r.idlePer = (after.idle - before.idle) / n
	r.backendSwitches = float64(after.backendSwitches-before.backendSwitches) / float64(r.requests)
	r.proxySwitches = float64(after.proxySwitches-before.proxySwitches) / float64(r.requests)
	return r, nil
}

// usage is what load reads before and after wrk: the CPU and context
// switches of the proxy and of the backends, and the cores' idle time.
type usage struct {
	proxyCPU, backendsCPU          time.Duration
	idle                           time.Duration
	proxySwitches, backendSwitches int64
}

func measure(proxyPIDs, backendPIDs []int) (u usage, err error) {
	if u.proxyCPU, err = cpuSum(proxyPIDs); err != nil {
		return u, err
	}
	if u.backendsCPU, err = cpuSum(backendPIDs); err != nil {
		return u, err
	}
	if _, u.idle, err = machine(); err != nil {
		return u, err
	}
	if u.proxySwitches, err = switches(proxyPIDs); err != nil {
		return u, err
	}
	u.backendSwitches, err = switches(backendPIDs)
	return u, err
}

func run(o options) error {
	for _, tool := range []string{"wrk", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (bench/mesh.sh installs it): %v", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "berth-bench-mesh-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "bench/mesh: logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var daemons []*daemon
	defer func() {
		for i := len(daemons) - 1; i >= 0; i-- {
			daemons[i].stop()
		}
	}()
	lanPort, err := freePort()
	if err != nil {
		return err
	}
	lanAddr := fmt.Sprintf("127.0.0.1:%d", lanPort)
	token := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	lm, err := start(dir, "lanmanager", filepath.Join(o.bin, "lanmanager"), "serve", "--listen", lanAddr,
		"--data", filepath.Join(dir, "lan"), "--token", token, "--ipc-listen", "off", "--gateway-listen", "off")
	if err != nil {
		return err
	}
	daemons = append(daemons, lm)
	base, err := freeBlock(30)
	if err != nil {
		return err
	}
	cfg := map[string]any{"lanmanageraddress": lanAddr, "name": "m1", "advertiseaddress": "127.0.0.1",
		"ingressaddress": "127.0.0.1", "token": token, "runtimedirectory": filepath.Join(dir, "rt"),
		"portrangestart": map[string]int{"tcp": base, "http": base + 10, "ws": base + 20}, "portrangesize": 10}
	b, _ := json.Marshal(cfg)
	conf := filepath.Join(dir, "masterconfig.json")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		return err
	}
	// --stop-children: at SIGTERM the master stops the instances too (by
	// default it leaves them running for its next start to adopt).
	margs := []string{filepath.Join(o.bin, "master"), "run", "--config", conf, "--stop-children"}
	if o.profile != "" {
		abs, err := filepath.Abs(o.profile)
		if err != nil {
			return err
		}
		margs = append(margs, "--cpuprofile", abs)
	}
	ms, err := start(dir, "master", margs...)
	if err != nil {
		return err
	}
	daemons = append(daemons, ms)
	cli := func(args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(o.bin, "lanmanager"), args...)
		cmd.Env = append(os.Environ(), "BERTH_ADDR="+lanAddr, "BERTH_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("lanmanager %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out, nil
	}
	ingress, err := freePort()
	if err != nil {
		return err
	}
	if err := waitFor(20*time.Second, "the master to connect", func() (bool, error) {
		out, err := cli("master", "ls")
		return err == nil && strings.Contains(string(out), "connected"), err
	}); err != nil {
		return err
	}
	if _, err := cli("need", "add", "hello", "--instances", "2", "--protocols", "http", "--ingress", fmt.Sprintf("http=%d", ingress),
		"--", filepath.Join(o.bin, "hello")); err != nil {
		return err
	}
	var backends []string
	var backendPIDs []int
	if err := waitFor(60*time.Second, "2 instances running and the ingress open", func() (bool, error) {
		out, err := cli("service", "ls", "--json")
		if err != nil {
			return false, err
		}
		var svcs []struct {
			State   string
			Address string
			Ports   map[string]int
			PID     int
		}
		if err := json.Unmarshal(out, &svcs); err != nil {
			return false, err
		}
		backends, backendPIDs = backends[:0], backendPIDs[:0]
		for _, s := range svcs {
			if s.State == "running" {
				backends = append(backends, fmt.Sprintf("%s:%d", s.Address, s.Ports["http"]))
				backendPIDs = append(backendPIDs, s.PID)
			}
		}
		if len(backends) != 2 {
			return false, fmt.Errorf("%d running", len(backends))
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", ingress))
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	}); err != nil {
		return err
	}
	hport, err := freePort()
	if err != nil {
		return err
	}
	smart := ""
	if o.smart {
		smart = "    option tcp-smart-connect\n"
	}
	hcfg := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    balance roundrobin
%s    server b0 %s
    server b1 %s
`, hport, smart, backends[0], backends[1])
	hconf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hconf, []byte(hcfg), 0o600); err != nil {
		return err
	}
	hp, err := start(dir, "haproxy", "haproxy", "-db", "-f", hconf)
	if err != nil {
		return err
	}
	daemons = append(daemons, hp)
	if err := waitFor(10*time.Second, "haproxy to listen", func() (bool, error) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hport))
		if err == nil {
			c.Close()
		}
		return err == nil, err
	}); err != nil {
		return err
	}

	targets := []struct {
		name string
		url  string
		pid  int
	}{
		{"direct (one backend)", "http://" + backends[0] + "/", 0},
		{"HAProxy mode tcp", fmt.Sprintf("http://127.0.0.1:%d/", hport), hp.cmd.Process.Pid},
		{"berth ingress", fmt.Sprintf("http://127.0.0.1:%d/", ingress), ms.cmd.Process.Pid},
	}
	fmt.Printf("bench/mesh: wrk -t%d -c%d -d%s, 2 instances of examples/hello; %d cores shared by wrk, the proxies and the backends\n\n",
		o.threads, o.conns, o.duration, runtime.NumCPU())
	for _, mode := range []struct {
		name  string
		close bool
	}{{"keep-alive", false}, {"one request per connection", true}} {
		fmt.Printf("%s:\n", mode.name)
		fmt.Printf("  %-22s %12s %10s %10s %16s %8s   %s\n", "target", "requests/s", "p50", "p99", "proxy CPU/req", "errors",
			"per request: wrk, backends, idle cores; context switches of the backends, the proxy")
		var tput, cpuRatio []float64
		for round := range o.rounds {
			if o.rounds > 1 {
				fmt.Printf("  round %d\n", round+1)
			}
			// Odd rounds run berth before HAProxy, so that a machine
			// that speeds up or slows down over the run favours neither.
			order := []int{0, 1, 2}
			if round%2 == 1 {
				order = []int{0, 2, 1}
			}
			res := make([]result, len(targets))
			for _, i := range order {
				tg := targets[i]
				r, err := load(o, tg.url, mode.close, tg.pid, backendPIDs)
				if err != nil {
					return err
				}
				res[i] = r
				per := "-"
				if tg.pid > 0 {
					per = r.cpuPer.Round(100 * time.Nanosecond).String()
				}
				fmt.Printf("  %-22s %12.0f %10s %10s %16s %8d   %s, %s, %s; %.2f, %.2f\n", tg.name, r.rps, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), per, r.errors,
					r.wrkPer.Round(100*time.Nanosecond), r.backendsPer.Round(100*time.Nanosecond), r.idlePer.Round(100*time.Nanosecond),
					r.backendSwitches, r.proxySwitches)
			}
			d, h, b := res[0], res[1], res[2]
			tput = append(tput, b.rps/h.rps)
			cpuRatio = append(cpuRatio, float64(b.cpuPer)/float64(h.cpuPer))
			fmt.Printf("  berth/HAProxy: throughput %.2f×, CPU per request %.2f×; berth/direct: throughput %.2f×, added p50 %s\n",
				b.rps/h.rps, float64(b.cpuPer)/float64(h.cpuPer), b.rps/d.rps, (b.p50 - d.p50).Round(10*time.Microsecond))
		}
		if o.rounds > 1 {
			fmt.Printf("  over %d rounds, berth/HAProxy: throughput median %.2f× (%.2f–%.2f×), CPU per request median %.2f× (%.2f–%.2f×)\n",
				o.rounds, median(tput), slices.Min(tput), slices.Max(tput), median(cpuRatio), slices.Min(cpuRatio), slices.Max(cpuRatio))
		}
		fmt.Println()
	}
	return nil
}
