package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// What the tests see of the machine itself, beside what berth reports: the
// processes that really run, the ports that really listen, and the figures
// the scenarios print.

// e2eMarkerEnv is set in each master's environment, with a value unique to
// that master; children inherit it, so the tests find every process a
// master started, whatever the master itself says.
const e2eMarkerEnv = "E2E_BERTH_MASTER"

var markerSeq atomic.Int64

// newMarker returns a marker value no other master of this test binary has.
func newMarker(name string) string {
	return fmt.Sprintf("%d-%d-%s", os.Getpid(), markerSeq.Add(1), name)
}

// childProc is a live process that carries a master's marker and berth's
// child contract in its environment.
type childProc struct {
	pid, pgid int
	need      string
	instance  string
	alloc     string
}

// leader reports whether the process leads its own group, as every child a
// master spawns does (its grandchildren do not).
func (c childProc) leader() bool { return c.pid == c.pgid }

// childProcs lists the live (non-zombie) processes whose environment
// carries marker and a BERTH_INSTANCE, grandchildren included.
func childProcs(marker string) []childProc {
	ents, _ := os.ReadDir("/proc")
	var out []childProc
	want := []byte("\x00" + e2eMarkerEnv + "=" + marker + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(append([]byte{0}, env...), 0), want) {
			continue
		}
		c := childProc{pid: pid}
		for _, kv := range bytes.Split(env, []byte{0}) {
			k, v, _ := strings.Cut(string(kv), "=")
			switch k {
			case "BERTH_NEED":
				c.need = v
			case "BERTH_INSTANCE":
				c.instance = v
			case "BERTH_ALLOC":
				c.alloc = v
			}
		}
		if c.instance == "" {
			continue // the master itself
		}
		var zombie bool
		c.pgid, zombie = procGroup(pid)
		if c.pgid == 0 || zombie {
			continue
		}
		out = append(out, c)
	}
	return out
}

// leaders returns the group leaders among childProcs(marker): the children
// the master spawned, by pid.
func leaders(marker string) map[int]childProc {
	out := map[int]childProc{}
	for _, c := range childProcs(marker) {
		if c.leader() {
			out[c.pid] = c
		}
	}
	return out
}

// procGroup reads a process's group id and whether it is a zombie from
// /proc/PID/stat; 0 when the process is gone.
func procGroup(pid int) (pgid int, zombie bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:])) // state ppid pgrp ...
	if len(f) < 3 {
		return 0, false
	}
	pgid, _ = strconv.Atoi(f[2])
	return pgid, f[0] == "Z"
}

// killChildren SIGKILLs the process group of every process carrying
// marker: whatever a test left running dies with it.
func killChildren(marker string) {
	for range 3 {
		procs := childProcs(marker)
		if len(procs) == 0 {
			return
		}
		for _, c := range procs {
			syscall.Kill(-c.pgid, syscall.SIGKILL)
			syscall.Kill(c.pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(childProcs(marker)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// listeningPorts returns the TCP ports in LISTEN state in the network
// namespace of process pid ("self" for the test's own).
func listeningPorts(pid string) map[int]bool {
	out := map[int]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "net", f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // 0A is TCP_LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				out[int(p)] = true
			}
		}
	}
	return out
}

// figure prints one measured figure in a stable form for grep:
//
//	FIGURE name key=value key=value ...
func figure(t *testing.T, name string, kv ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("FIGURE " + name)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	t.Log(b.String())
}

// median returns the median of ds (the lower middle one for an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// durs formats durations as [a b c], each rounded to the millisecond.
func durs(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// ms rounds d to the millisecond for printing.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
