package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

// TestParseWrk reads outputs of wrk 4.1 (Debian's) as it printed them.
func TestParseWrk(t *testing.T) {
	for _, tt := range []struct {
		file     string
		requests int64
		rps      float64
		p50, p99 time.Duration
		errors   int64
	}{
		{"testdata/wrk-ok.txt", 177, 176.83, 24070 * time.Microsecond, 32290 * time.Microsecond, 0},
		{"testdata/wrk-non2xx.txt", 1667, 1666.32, 1050 * time.Microsecond, 7350 * time.Microsecond, 1667},
	} {
		b, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		r, err := parseWrk(string(b))
		if err != nil || r.requests != tt.requests || r.rps != tt.rps || r.p50 != tt.p50 || r.p99 != tt.p99 || r.errors != tt.errors {
			t.Errorf("%s: %+v %v, want requests %d, %.2f/s, p50 %s, p99 %s, errors %d", tt.file, r, err, tt.requests, tt.rps, tt.p50, tt.p99, tt.errors)
		}
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("parseWrk of a failed run: no error")
	}
}

// TestMachine reads the cores' busy and idle time, which only grow.
func TestMachine(t *testing.T) {
	b1, i1, err := machine()
	if err != nil {
		t.Fatal(err)
	}
	if b1 <= 0 || i1 < 0 {
		t.Fatalf("busy %v, idle %v: want busy > 0 and idle >= 0", b1, i1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b2, i2, err := machine()
		if err != nil {
			t.Fatal(err)
		}
		if b2 < b1 || i2 < i1 {
			t.Fatalf("went back: busy %v -> %v, idle %v -> %v", b1, b2, i1, i2)
		}
		if b2+i2 > b1+i1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the machine's time did not move in 10s")
		}
		time.Sleep(20 * time.Millisecond) // the clock ticks every 10 ms; nothing to wait for but time
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{0.9}, 0.9},
		{[]float64{1.1, 0.8, 0.95}, 0.95},
		{[]float64{1.0, 0.8, 0.9, 1.2}, 0.95},
	} {
		in := slices.Clone(tt.xs)
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
		if !slices.Equal(in, tt.xs) {
			t.Errorf("median changed its argument: %v, was %v", tt.xs, in)
		}
	}
}

// TestSwitches counts this process's context switches, which only grow.
func TestSwitches(t *testing.T) {
	if _, err := switches([]int{-1}); err == nil {
		t.Error("switches of pid -1: no error")
	}
	self := []int{os.Getpid()}
	a, err := switches(self)
	if err != nil {
		t.Fatal(err)
	}
	if a <= 0 {
		t.Fatalf("%d context switches so far, want some", a)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := switches(self)
		if err != nil {
			t.Fatal(err)
		}
		if b > a {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("context switches stayed at %d for 10s while the test slept", a)
		}
		time.Sleep(10 * time.Millisecond) // a sleep is a switch: what the test counts
	}
}
