package main

import (
	"bytes"
	"strings"
	"testing"

	"berth/pipes"
)

// TestPrintDrivers: one row per driver, exec shown as built in, and the
// reason of each unavailable driver under the table.
func TestPrintDrivers(t *testing.T) {
	list := []pipes.DriverInfo{
		{Name: "exec", Builtin: true, Available: true, Signals: true, SocketActivation: true},
		{Name: "rawexec", Version: "1.0.0", Available: true, Signals: true, PID: 4242, Restarts: 2},
		{Name: "bwrap", Available: false, Reason: "bwrap not found in PATH"},
	}
	var b bytes.Buffer
	if err := printDrivers(&b, list); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"NAME VERSION AVAILABLE SUPPORTS PID RESTARTS",
		"exec built in true signals,sockets - 0",
		"rawexec 1.0.0 true signals 4242 2",
		"bwrap - false - - 0",
		"bwrap: bwrap not found in PATH",
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", b.String())
	}
	for i, w := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != w {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}
}
