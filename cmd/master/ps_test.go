package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// TestPrintPS: the table has an ADOPTED column that tells a child taken over
// from a previous run from one this run spawned, and a TRACKING column that
// says how the master tracks the child's processes.
func TestPrintPS(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	list := []pipes.ChildInfo{
		{Instance: "web.0", State: "running", PID: 4242, Ports: map[needs.Protocol]int{needs.HTTP: 16000, needs.TCP: 15000},
			Ready: true, Adopted: true, StartedAt: now.Add(-90 * time.Second), Log: "/rt/logs/web.0.log",
			Tracking: "cgroup /sys/fs/cgroup/berth/0123456789abcdef/a1b2c3d4"},
		{Instance: "web.1", State: "starting", PID: 4343, StartedAt: now.Add(-2 * time.Second), Log: "/rt/logs/web.1.log",
			Tracking: "process group 4343"},
	}
	var b bytes.Buffer
	if err := printPS(&b, list, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s\nwant a header and 2 rows", b.String())
	}
	want := [][]string{
		{"INSTANCE", "STATE", "PID", "PORTS", "READY", "ADOPTED", "UP", "LOG", "TRACKING"},
		{"web.0", "running", "4242", "tcp:15000,http:16000", "true", "true", "1m30s", "/rt/logs/web.0.log", "cgroup", "/sys/fs/cgroup/berth/0123456789abcdef/a1b2c3d4"},
		{"web.1", "starting", "4343", "false", "false", "2s", "/rt/logs/web.1.log", "process", "group", "4343"},
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], w)
		}
	}
}
