// Command startup measures berth against the processes it runs:
//
//  1. the time from `need add` of N instances of examples/hello (one http
//     port each) to all N running, on one master (lanmanager dev), next to
//     the time to start the same N processes directly and wait for their
//     ports, and the ratio of the two;
//  2. the time from kill -9 of a child to its instance running again
//     (median of R rounds).
//
// Everything runs on loopback; every loop is bounded in count and time.
// Run it through bench/startup.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"berth/lan"
	"berth/needs"
)

func main() {
	n := flag.Int("n", 50, "instances")
	rounds := flag.Int("rounds", 20, "kill -9 rounds")
	binDir := flag.String("bin", "", "directory with lanmanager and hello binaries")
	flag.Parse()
	if err := run(*binDir, *n, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

func run(binDir string, n, rounds int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hello := filepath.Join(binDir, "hello")
	direct, err := direct(ctx, hello, n)
	if err != nil {
		return fmt.Errorf("direct start: %w", err)
	}
	addr, stop, err := startDev(ctx, filepath.Join(binDir, "lanmanager"))
	if err != nil {
		return err
	}
	defer stop()
	c := &lan.Client{Addr: addr}
	viaBerth, err := viaBerth(ctx, c, hello, n)
	if err != nil {
		return fmt.Errorf("through berth: %w", err)
	}
	fmt.Printf("start %d instances directly, wait for ports:  %v\n", n, direct.Round(time.Millisecond))
	fmt.Printf("need add of %d instances to all running:      %v\n", n, viaBerth.Round(time.Millisecond))
	fmt.Printf("ratio berth/direct:                           %.2f\n", float64(viaBerth)/float64(direct))

	recov, err := recovery(ctx, c, rounds)
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	slices.Sort(recov)
	fmt.Printf("kill -9 to running again, %d rounds: median %v, min %v, max %v\n", len(recov),
		recov[len(recov)/2].Round(time.Millisecond), recov[0].Round(time.Millisecond), recov[len(recov)-1].Round(time.Millisecond))
	return c.RemoveNeed(ctx, "bench")
}

// direct starts n hello processes on ports it picks and waits until every
// port accepts a connection.
func direct(ctx context.Context, hello string, n int) (time.Duration, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	start := time.Now()
	cmds := make([]*exec.Cmd, n)
	defer func() {
		for _, c := range cmds {
			if c != nil && c.Process != nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	}()
	for i := range cmds {
		c := exec.Command(hello)
		c.Env = append(os.Environ(), "BERTH_HOST=127.0.0.1", fmt.Sprintf("BERTH_PORT_HTTP=%d", ports[i]), fmt.Sprintf("BERTH_INSTANCE=direct.%d", i))
		if err := c.Start(); err != nil {
			return 0, err
		}
		cmds[i] = c
	}
	for _, p := range ports {
		if err := waitPort(ctx, p); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func waitPort(ctx context.Context, port int) error {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return ctx.Err()
}

func startDev(ctx context.Context, lanmanager string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(lanmanager, "dev", "--listen", addr, "--ipc-listen", "off", "--gateway-listen", "off")
	log, err := os.CreateTemp("", "berth-bench-dev-*.log")
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		log.Close()
		os.Remove(log.Name())
	}
	c := &lan.Client{Addr: addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms, err := c.Masters(ctx)
		if err == nil && len(ms) == 1 && ms[0].Connected {
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("dev master did not connect: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func viaBerth(ctx context.Context, c *lan.Client, hello string, n int) (time.Duration, error) {
	start := time.Now()
	if _, err := c.AddNeed(ctx, lan.NeedSpec{Name: "bench", Command: []string{hello}, Instances: &n, Protocols: []needs.Protocol{needs.HTTP}}); err != nil {
		return 0, err
	}
	if err := waitRunning(ctx, c, n, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// waitRunning polls until n instances run and, if pids is set, none of them
// has a pid in it.
func waitRunning(ctx context.Context, c *lan.Client, n int, old map[int]bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := c.Need(ctx, "bench")
		if err != nil {
			return err
		}
		if st.Running == n {
			ok := true
			for _, in := range st.InstanceList {
				if old[in.PID] {
					ok = false
				}
			}
			if ok {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%d instances not running within 2 minutes", n)
}

func recovery(ctx context.Context, c *lan.Client, rounds int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < rounds; i++ {
		st, err := c.Need(ctx, "bench")
		if err != nil {
			return nil, err
		}
		victim := st.InstanceList[i%len(st.InstanceList)]
		start := time.Now()
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			return nil, err
		}
		if err := waitRunning(ctx, c, st.Instances, map[int]bool{victim.PID: true}); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}
