package main

import (
	"os"
	"strings"
	"testing"
)

// TestProcUsage reads this process's usage, and names what it could not read.
func TestProcUsage(t *testing.T) {
	u, err := procUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS == 0 || u.PeakRSS < u.RSS {
		t.Errorf("usage %+v: want RSS > 0 and peak >= RSS", u)
	}
	if _, err := procUsage(1 << 30); err == nil || !strings.Contains(err.Error(), "read usage") {
		t.Errorf("usage of a pid that does not exist: error %v, want one saying read usage", err)
	}
}
