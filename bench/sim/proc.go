package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// usage is what the kernel says a process has used.
type usage struct {
	RSS, PeakRSS uint64        // bytes: VmRSS and VmHWM
	CPU          time.Duration // user + system
}

// clockTicks is the kernel's USER_HZ, 100 on every Linux architecture Go
// supports (sysconf(_SC_CLK_TCK) without cgo).
const clockTicks = 100

// procUsage reads /proc/<pid>/status and /proc/<pid>/stat; pid 0 reads
// the calling process.
func procUsage(pid int) (usage, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var u usage
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return u, fmt.Errorf("read usage: %w", err)
	}
	for line := range bytes.Lines(status) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			u.RSS = kb << 10
		case "VmHWM:":
			u.PeakRSS = kb << 10
		}
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return u, fmt.Errorf("read usage: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("read usage: %s/stat: no command name", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("read usage: %s/stat: %d fields after the name, want at least 13", dir, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("read usage: %s/stat: utime %q, stime %q", dir, f[11], f[12])
	}
	u.CPU = time.Duration(ut+st) * time.Second / clockTicks
	return u, nil
}
