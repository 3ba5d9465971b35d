package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestProcs runs the comparison at a small size with the real binaries and
// checks correctness only: every instance ran exactly once (checkOnce) and
// the masters ran them all. It prints the times but judges none.
func TestProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binaries")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "berth/cmd/lanmanager", "berth/cmd/master", "berth/bench/procs/tiny")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	o := options{n: 50, masters: 2, bin: bin, timeout: 3 * time.Minute, logf: t.Logf}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.timeout)
	defer cancel()
	r, err := run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, k := range r.perMaster {
		sum += k
	}
	if sum != o.n || len(r.perMaster) > o.masters {
		t.Errorf("instances per master %v: want %d in all on at most %d masters", r.perMaster, o.n, o.masters)
	}
	t.Logf("direct %v, berth %v", r.direct, r.berth)
}

func TestOptionsCheck(t *testing.T) {
	bin := t.TempDir()
	for _, o := range []options{
		{n: 0, masters: 2, bin: bin, timeout: time.Minute},
		{n: maxN + 1, masters: 2, bin: bin, timeout: time.Minute},
		{n: 10, masters: 0, bin: bin, timeout: time.Minute},
		{n: 10, masters: 2, bin: "", timeout: time.Minute},
		{n: 10, masters: 2, bin: bin, timeout: 0},
		{n: 10, masters: 2, bin: bin, timeout: time.Minute}, // no binaries in bin
	} {
		if err := o.check(); err == nil {
			t.Errorf("check(%+v) = nil, want an error", o)
		}
	}
}
