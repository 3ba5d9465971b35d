package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// setNice sets the scheduling priority of every thread of this process to
// nice. Linux keeps a priority per thread and a new thread takes its
// creator's, so once every thread has it the whole process keeps it.
func setNice(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("set priority: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			return fmt.Errorf("set priority %d of thread %d: %w", nice, tid, err)
		}
	}
	return nil
}
