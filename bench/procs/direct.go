package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"berth/pipes"
)

// direct forks and execs n tiny programs one by one, each with BERTH_PIPE
// set to one Unix socket, and returns the time until every one of them has
// said child.ready there. It stops them (SIGTERM, then SIGKILL after 10 s)
// and waits for them before it returns.
func direct(ctx context.Context, o options, tmp string) (time.Duration, error) {
	l, err := pipes.Listen(filepath.Join(tmp, "direct.sock"))
	if err != nil {
		return 0, err
	}
	readies := make(chan int, 2*o.n) // pids, one per child.ready (a second one is an error)
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	var conns []*pipes.Conn
	defer func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	wg.Go(func() {
		for {
			c, err := l.AcceptConn()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { readChild(c, readies) })
		}
	})

	tiny := filepath.Join(o.bin, "tiny")
	env := append(os.Environ(), "BERTH_PIPE="+l.Path())
	cmds := make([]*exec.Cmd, 0, o.n)
	defer stopDirect(&cmds)
	start := time.Now()
	for i := range o.n {
		c := exec.Command(tiny)
		c.Env = append(env, fmt.Sprintf("BERTH_INSTANCE=direct.%d", i))
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as a master starts its children
		if err := c.Start(); err != nil {
			return 0, fmt.Errorf("start child %d: %w", i, err)
		}
		cmds = append(cmds, c)
	}
	seen := make(map[int]bool, o.n)
	for len(seen) < o.n {
		select {
		case pid := <-readies:
			if seen[pid] {
				return 0, fmt.Errorf("pid %d said ready twice", pid)
			}
			seen[pid] = true
		case <-ctx.Done():
			return 0, fmt.Errorf("%d of %d children ready: %w", len(seen), o.n, ctx.Err())
		}
	}
	took := time.Since(start)
	for _, c := range cmds {
		if !seen[c.Process.Pid] {
			return 0, fmt.Errorf("child %d never said ready", c.Process.Pid)
		}
	}
	o.progress("direct: %d children ready after %v", o.n, took.Round(time.Millisecond))
	return took, nil
}

// readChild reads one child's frames: its child.hello names its pid, and
// its child.ready is counted once.
func readChild(c *pipes.Conn, readies chan<- int) {
	defer c.Close()
	pid := 0
	for {
		m, err := c.Recv()
		if err != nil {
			return
		}
		switch m.Type {
		case pipes.TypeChildHello:
			var h pipes.ChildHello
			if m.Decode(&h) == nil {
				pid = h.PID
			}
		case pipes.TypeChildReady:
			readies <- pid
		}
	}
}

// stopDirect stops the children it is given and waits for them.
func stopDirect(cmds *[]*exec.Cmd) {
	for _, c := range *cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range *cmds {
		t := time.AfterFunc(10*time.Second, func() { c.Process.Kill() })
		c.Wait()
		t.Stop()
	}
}

func (o options) progress(format string, args ...any) {
	if o.logf != nil {
		o.logf(format, args...)
	}
}
