package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// TestDrain drains a master that runs half of a need's instances: the
// replacements start elsewhere before the old ones stop, so at no moment
// (polled every 5 ms, through the API and in the real process table) does
// the need run fewer than it asked for. While draining, the master takes
// no new work; after undrain it does again.
func TestDrain(t *testing.T) {
	const want = 4
	l := startLan(t, "", "--stop-grace", "2s")
	m1 := startMaster(t, l, "m1", 10)
	m2 := startMaster(t, l, "m2", 10)
	client := &lan.Client{Addr: "http://" + l.addr, Token: l.token}
	l.mustCLI(t, "need", "add", "web", "--instances", fmt.Sprint(want), "--protocols", "http", "--", bin.hello)
	waitFor(t, 60*time.Second, "4 running, some on m1", func() bool {
		run := l.running(t, "web")
		on := 0
		for _, s := range run {
			if s.Master == "m1" {
				on++
			}
		}
		return len(run) == want && on > 0 && len(leaders(m1.marker))+len(leaders(m2.marker)) == want
	})
	var onM1 int
	for _, s := range l.running(t, "web") {
		if s.Master == "m1" {
			onM1++
		}
	}

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		out, err := l.cli(t, "master", "drain", "m1", "--wait", "--timeout", "60s")
		done <- result{out, err}
	}()

	minAPI, minReal := want, want
	var drained time.Duration
	var res *result
	deadline := time.Now().Add(90 * time.Second)
	sawDraining := false
	polls := 0
	for res == nil || drained == 0 {
		polls++
		if time.Now().After(deadline) {
			t.Fatalf("drain not over after 90 s: drain command returned: %t, m1 still runs %d", res != nil, len(leaders(m1.marker)))
		}
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("master drain m1 --wait: %v", r.err)
			}
			res = &r
		default:
		}
		svcs, err := client.Services(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		running, left := 0, 0
		for _, s := range svcs {
			if s.Need == "web" && s.State == needs.Running {
				running++
			}
			if s.Master == "m1" {
				left++
			}
		}
		real := len(leaders(m1.marker)) + len(leaders(m2.marker))
		minAPI, minReal = min(minAPI, running), min(minReal, real)
		if !sawDraining {
			if list, err := client.Masters(t.Context()); err == nil {
				for _, m := range list {
					sawDraining = sawDraining || m.Name == "m1" && m.Draining
				}
			}
		}
		if drained == 0 && left == 0 && running == want && len(leaders(m1.marker)) == 0 {
			drained = time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if minAPI < want || minReal < want {
		t.Errorf("during the drain web ran as few as %d instances by the lanmanager and %d processes; want never below %d", minAPI, minReal, want)
	}
	if !sawDraining {
		t.Error("master ls never showed m1 as draining")
	}
	figure(t, "drain", "instances", want, "moved", onM1, "min_running_reported", minAPI, "min_processes", minReal,
		"drain_time", ms(drained), "polls", polls)

	// Draining: new work goes elsewhere.
	l.mustCLI(t, "need", "add", "other", "--instances", "2", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "other to run", func() bool { return len(l.running(t, "other")) == 2 })
	for name, s := range l.running(t, "other") {
		if s.Master == "m1" {
			t.Errorf("%s was placed on draining m1", name)
		}
	}
	if out := l.mustCLI(t, "master", "ls"); !strings.Contains(out, "drain") {
		t.Errorf("master ls does not show the drain:\n%s", out)
	}

	// Undrained: it takes work again.
	l.mustCLI(t, "master", "undrain", "m1")
	if rec := l.master(t, "m1"); rec == nil || rec.Draining {
		t.Errorf("after undrain m1 is %+v", rec)
	}
	l.mustCLI(t, "need", "scale", "web", "6")
	waitFor(t, 30*time.Second, "web to run 6, some on m1", func() bool {
		run := l.running(t, "web")
		for _, s := range run {
			if s.Master == "m1" {
				return len(run) == 6
			}
		}
		return false
	})
	if _, err := l.cli(t, "master", "drain", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("master drain nope: %v; want an error naming it", err)
	}
}
