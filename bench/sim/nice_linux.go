package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setPriority sets the scheduling of every thread of this process: nice
// under the normal policy, or, with idle, SCHED_IDLE (a core only when no
// other thread wants it; nice does not apply). Linux keeps a policy and a
// priority per thread and a new thread takes its creator's, so once every
// thread has them the whole process keeps them.
func setPriority(nice int, idle bool) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("set priority: %w", err)
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: int32(nice)}
	what := fmt.Sprintf("priority %d", nice)
	if idle {
		attr = unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
		what = "SCHED_IDLE"
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
			return fmt.Errorf("set %s of thread %d: %w", what, tid, err)
		}
	}
	return nil
}
