package main

import "testing"

// TestRun runs every phase briefly: the benchmark works end to end
// (answers through the gateway, direct requests, pushes).
func TestRun(t *testing.T) {
	if err := run(2, 200_000_000, 200); err != nil {
		t.Fatal(err)
	}
}
