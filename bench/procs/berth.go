package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"berth/lan"
	"berth/needs"
)

// perNeed is the lanmanager's largest need.
const perNeed = 1000

// viaBerth starts a lanmanager and o.masters masters, declares needs of
// o.n tiny instances in all, and returns the time from the first
// declaration until all of them run, and how many each master runs. It
// checks that every instance ran exactly once. The needs are removed and
// the daemons stopped before it returns.
func viaBerth(ctx context.Context, o options, tmp string) (time.Duration, map[string]int, map[string]time.Duration, error) {
	token := make([]byte, 16)
	rand.Read(token)
	tok := hex.EncodeToString(token)
	env := append(os.Environ(), "BERTH_ANNOUNCE_DIR="+filepath.Join(tmp, "announce"), "BERTH_TOKEN="+tok)
	addr, err := freeAddr()
	if err != nil {
		return 0, nil, nil, err
	}
	lm, err := startDaemon(o, tmp, "lanmanager", env, filepath.Join(o.bin, "lanmanager"), "serve",
		"--listen", addr, "--data", filepath.Join(tmp, "lan"), "--ipc-listen", "off", "--gateway-listen", "off")
	if err != nil {
		return 0, nil, nil, err
	}
	daemons := []*daemon{lm}
	defer func() {
		// Masters first (they stop their children), the lanmanager last.
		for i := len(daemons) - 1; i >= 0; i-- {
			daemons[i].stop()
		}
	}()
	for i := range o.masters {
		name := fmt.Sprintf("m%d", i+1)
		cfg, err := masterConfig(tmp, name, addr)
		if err != nil {
			return 0, nil, nil, err
		}
		m, err := startDaemon(o, tmp, name, env, filepath.Join(o.bin, "master"), "run", "--config", cfg, "--stop-children")
		if err != nil {
			return 0, nil, nil, err
		}
		daemons = append(daemons, m)
	}
	c := &lan.Client{Addr: addr, Token: tok}
	if err := poll(ctx, daemons, "every master linked", func() (bool, error) {
		ms, err := c.Masters(ctx)
		if err != nil {
			return false, nil // not listening yet
		}
		linked := 0
		for _, m := range ms {
			if m.Connected {
				linked++
			}
		}
		return linked == o.masters, nil
	}); err != nil {
		return 0, nil, nil, err
	}
	if o.perf != "" {
		for _, d := range daemons {
			if err := d.startPerf(o.perf); err != nil {
				return 0, nil, nil, err
			}
		}
	}

	tiny := filepath.Join(o.bin, "tiny")
	var names []string
	start := time.Now()
	for left, i := o.n, 0; left > 0; i++ {
		k := min(left, perNeed)
		name := fmt.Sprintf("tiny%d", i)
		if _, err := c.AddNeed(ctx, lan.NeedSpec{Name: name, Command: []string{tiny}, Instances: &k}); err != nil {
			return 0, nil, nil, fmt.Errorf("need add %s: %w", name, err)
		}
		names = append(names, name)
		left -= k
	}
	running := 0
	err = poll(ctx, daemons, "every instance running", func() (bool, error) {
		ns, err := c.Needs(ctx)
		if err != nil {
			return false, err
		}
		running = 0
		for _, n := range ns {
			running += n.Running
		}
		return running == o.n, nil
	})
	took := time.Since(start)
	cpu := map[string]time.Duration{}
	for _, d := range daemons {
		d.stopPerf()
		if t, err := cpuTime(d.cmd.Process.Pid); err == nil {
			cpu[d.name] = t
		}
	}
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%d of %d running: %w", running, o.n, err)
	}
	o.progress("berth: %d instances running after %v", o.n, took.Round(time.Millisecond))

	perMaster, err := checkOnce(ctx, c, names, o.n)
	if err != nil {
		// Reported with the figures: a run where the lanmanager gave up
		// on a slow start and restarted an instance still measured.
		err = fmt.Errorf("not every instance ran exactly once:\n%w", err)
	}
	for _, name := range names {
		if rerr := c.RemoveNeed(ctx, name); rerr != nil {
			return 0, nil, nil, fmt.Errorf("need rm %s: %w", name, rerr)
		}
	}
	return took, perMaster, cpu, err
}

// checkOnce checks that every instance of the needs runs, each with a pid
// of its own, and never failed nor restarted: each ran exactly once. It
// returns how many each master runs.
func checkOnce(ctx context.Context, c *lan.Client, names []string, n int) (map[string]int, error) {
	perMaster := map[string]int{}
	pids := map[string]string{} // master/pid → instance
	var errs []error
	total := 0
	for _, name := range names {
		st, err := c.Need(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, in := range st.InstanceList {
			total++
			key := fmt.Sprintf("%s/%d", in.MasterID, in.PID)
			switch {
			case in.State != needs.Running:
				errs = append(errs, fmt.Errorf("%s is %s", in.Name, in.State))
			case in.PID <= 0:
				errs = append(errs, fmt.Errorf("%s runs without a pid", in.Name))
			case pids[key] != "":
				errs = append(errs, fmt.Errorf("%s and %s share pid %d on %s", in.Name, pids[key], in.PID, in.Master))
			case in.Failures > 0 || in.Restarts > 0:
				errs = append(errs, fmt.Errorf("%s failed %d and restarted %d times (last exit %q)", in.Name, in.Failures, in.Restarts, in.LastExit))
			}
			pids[key] = in.Name
			perMaster[in.Master]++
		}
	}
	if total != n {
		errs = append(errs, fmt.Errorf("%d instances listed, want %d", total, n))
	}
	return perMaster, errors.Join(errs...)
}

// poll calls cond every 100 ms until it is true, it fails, a daemon
// exits or ctx ends. Not more often: each call of GET /v1/needs costs the
// lanmanager a scan of every instance, and at 20 ms the polling took
// nearly half of its CPU.
func poll(ctx context.Context, ds []*daemon, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		for _, d := range ds {
			select {
			case <-d.done:
				return fmt.Errorf("waiting for %s: %s exited (%v); its log:\n%s", what, d.name, d.err, d.tail())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address with a port the kernel just gave.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// masterConfig writes the config file of master name. Its tiny children
// take no ports; each range is one port the kernel just gave.
func masterConfig(tmp, name, lanAddr string) (string, error) {
	ranges := map[needs.Protocol]int{}
	for _, p := range []needs.Protocol{needs.TCP, needs.HTTP, needs.WS} {
		a, err := freeAddr()
		if err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(a)
		n, err := strconv.Atoi(port)
		if err != nil {
			return "", err
		}
		ranges[p] = n
	}
	cfg := map[string]any{"lanmanageraddress": lanAddr, "portrangestart": ranges, "portrangesize": 1,
		"runtimedirectory": filepath.Join(tmp, name), "name": name, "advertiseaddress": "127.0.0.1"}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(tmp, name+".json")
	return path, os.WriteFile(path, b, 0o600)
}

// daemon is a lanmanager or master process of the run.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	perf *exec.Cmd
}

func startDaemon(o options, tmp, name string, env []string, bin string, args ...string) (*daemon, error) {
	d := &daemon{name: name, log: filepath.Join(tmp, name+".log"), done: make(chan struct{})}
	f, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env, d.cmd.Stdout, d.cmd.Stderr = env, f, f
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	return d, nil
}

// stop sends SIGTERM and waits up to a minute (a master stops its
// children first), then kills.
func (d *daemon) stop() {
	d.stopPerf()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// tail is the end of the daemon's log.
func (d *daemon) tail() string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

func (d *daemon) startPerf(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	d.perf = exec.Command("perf", "record", "-F", "999", "-g", "-o", filepath.Join(dir, d.name+".data"), "-p", fmt.Sprint(d.cmd.Process.Pid))
	d.perf.Stdout, d.perf.Stderr = nil, nil
	if err := d.perf.Start(); err != nil {
		return fmt.Errorf("perf record: %w", err)
	}
	return nil
}

func (d *daemon) stopPerf() {
	if d.perf == nil {
		return
	}
	d.perf.Process.Signal(syscall.SIGINT)
	d.perf.Wait()
	d.perf = nil
}

// cpuTime is the user and system time process pid has used, from
// /proc/<pid>/stat (fields 14 and 15, in USER_HZ ticks, 100 a second on
// every Linux architecture Go supports).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}
