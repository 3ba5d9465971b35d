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
		{Instance: "web.2", State: "running", PID: 4444, StartedAt: now.Add(-2 * time.Second), Log: "/rt/logs/web.2.log",
			Tracking: "cgroup /cg/a", Limits: &needs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 200},
			Usage: &pipes.Usage{Memory: 42 << 20, CPUs: 0.2, PIDs: 3, WindowMS: 250}},
		{Instance: "web.3", State: "running", PID: 4545, StartedAt: now.Add(-2 * time.Second), Log: "/rt/logs/web.3.log",
			Tracking: "process group 4545", Limits: &needs.Limits{Memory: 1 << 30}, Usage: &pipes.Usage{Memory: -1, CPUs: -1, PIDs: -1}},
	}
	var b bytes.Buffer
	if err := printPS(&b, list, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("table:\n%s\nwant a header and 4 rows", b.String())
	}
	want := [][]string{
		{"INSTANCE", "STATE", "PID", "PORTS", "READY", "ADOPTED", "UP", "MEMORY", "CPU", "PIDS", "LOG", "TRACKING"},
		{"web.0", "running", "4242", "tcp:15000,http:16000", "true", "true", "1m30s", "-", "-", "-", "/rt/logs/web.0.log", "cgroup", "/sys/fs/cgroup/berth/0123456789abcdef/a1b2c3d4"},
		{"web.1", "starting", "4343", "false", "false", "2s", "-", "-", "-", "/rt/logs/web.1.log", "process", "group", "4343"},
		{"web.2", "running", "4444", "false", "false", "2s", "42.0M/256M", "0.20/0.5", "3/200", "/rt/logs/web.2.log", "cgroup", "/cg/a"},
		{"web.3", "running", "4545", "false", "false", "2s", "?/1G", "-", "-", "/rt/logs/web.3.log", "process", "group", "4545"},
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], w)
		}
	}
}

// TestPrintPSUpstreams: a child's upstreams are listed under the table,
// with the error of one the master could not open again.
func TestPrintPSUpstreams(t *testing.T) {
	list := []pipes.ChildInfo{{Instance: "app.0", State: "running", PID: 7, Upstreams: []pipes.UpstreamState{
		{Name: "db", Need: "postgres", Protocol: needs.TCP, Address: "127.0.0.1:41000"},
		{Name: "cache", Need: "redis", Protocol: needs.TCP, Error: "cannot listen: listen tcp 127.0.0.1:41001: bind: address already in use"},
	}}}
	var b bytes.Buffer
	if err := printPS(&b, list, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\napp.0 upstream db (postgres:tcp): 127.0.0.1:41000\n",
		"\napp.0 upstream cache (redis:tcp): not open: cannot listen: listen tcp 127.0.0.1:41001: bind: address already in use\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("ps output:\n%s\nwant %q", b.String(), want)
		}
	}
}
