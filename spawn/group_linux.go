package spawn

import (
	"bytes"
	"os"
	"strconv"
)

// GroupMembers returns the live (non-zombie) processes of the process group
// a child led, for a caller that did not start it (a master cleaning up
// after a crashed predecessor). leaderStart is the leader's recorded start
// time.
//
// If the leader still runs with that start time, its group is returned. If
// a process with the leader's pid runs with another start time, the pid was
// reused, which the kernel does only once no process is left in the old
// group: nothing is returned. If the leader is gone, the processes whose
// process group is still the leader's pid are returned: the kernel does not
// hand out a pid that is still some group's id, so they belong to the old
// group.
func GroupMembers(pgid int, leaderStart uint64) []int {
	if pgid <= 1 {
		return nil // 0 would match kernel threads, and kill(-0) is our own group
	}
	if _, start, err := readStat(pgid); err == nil && start != leaderStart {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		state, pgrp, ok := statGroup(b)
		if ok && pgrp == pgid && state != 'Z' {
			out = append(out, pid)
		}
	}
	return out
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
