package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// statStartTime is the 1-based index of starttime in /proc/<pid>/stat.
const statStartTime = 22

// ProcStartTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/<pid>/stat). Together with the pid it names a
// process for good: a reused pid has a different start time.
func ProcStartTime(pid int) (uint64, error) {
	_, start, err := readStat(pid)
	return start, err
}

// readStat returns the state letter (R, S, Z, ...) and start time of pid.
func readStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	state, start, err = parseStat(b)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return state, start, nil
}

// procStat is what readProc reads from /proc/<pid>/stat.
type procStat struct {
	state byte   // R, S, Z, ...
	pgrp  int    // process group id
	start uint64 // start time in clock ticks since boot
}

// readProc reads the state, process group and start time of pid; the error
// wraps os.ErrNotExist when no process has that pid.
func readProc(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	state, start, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	_, pgrp, ok := statGroup(b)
	if !ok {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: bad process group", pid)
	}
	return procStat{state: state, pgrp: pgrp, start: start}, nil
}

// parseStat parses the contents of a /proc/<pid>/stat file. The second
// field, comm, is in parentheses and may itself contain spaces and ")", so
// the fields after it are found from the last ")" in the line.
func parseStat(b []byte) (state byte, start uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no ')' after comm")
	}
	// Fields after comm start at field 3 (state).
	f := bytes.Fields(b[i+1:])
	if len(f) < statStartTime-2 {
		return 0, 0, fmt.Errorf("%d fields after comm, want at least %d", len(f), statStartTime-2)
	}
	if len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("bad state %q", f[0])
	}
	start, err = strconv.ParseUint(string(f[statStartTime-3]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bad starttime: %w", err)
	}
	return f[0][0], start, nil
}

// statGroup returns the state and process group (field 5) of a stat line.
func statGroup(b []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	return f[0][0], pgrp, err == nil
}
