package child

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every architecture Linux and Go support.
const clockTicks = 100

// cpuTicks returns the user plus system CPU time of this process in clock
// ticks.
func cpuTicks() (uint64, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat returns utime+stime from the contents of /proc/<pid>/stat. The
// second field, comm, is in parentheses and may itself hold spaces and ')',
// so the fields are counted from the last ')': state is field 3, utime and
// stime are fields 14 and 15.
func parseStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/self/stat: no ')' after comm")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/self/stat: %d fields after comm, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/self/stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/self/stat stime: %w", err)
	}
	return utime + stime, nil
}

// rssBytes returns the resident set size of this process.
func rssBytes() (uint64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	pages, err := parseStatm(b)
	if err != nil {
		return 0, err
	}
	return pages * uint64(os.Getpagesize()), nil
}

// parseStatm returns the resident pages, the second field of
// /proc/<pid>/statm.
func parseStatm(b []byte) (uint64, error) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("parse /proc/self/statm: %d fields, want at least 2", len(f))
	}
	n, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/self/statm resident: %w", err)
	}
	return n, nil
}
