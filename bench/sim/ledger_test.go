package main

import (
	"strings"
	"testing"
	"time"

	"berth/needs"
)

// svc is a service entry as GET /v1/services lists it.
func svc(name, master, alloc string, state needs.State) *needs.Instance {
	return &needs.Instance{Name: name, Placement: needs.Placement{Master: master, Alloc: alloc}, State: state}
}

// TestLedgerFindsViolations: each way a lanmanager could break "placed
// exactly once, nothing lost" is reported, and a correct outcome is not.
func TestLedgerFindsViolations(t *testing.T) {
	expected := []string{"a.0", "a.1"}
	for _, tt := range []struct {
		name     string
		play     func(l *ledger)
		services []*needs.Instance
		want     string // "" for no violation
	}{
		{"correct", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.approved("m1", "alloc-a0")
			l.granted("m2", "alloc-a1", "a.1")
			l.approved("m2", "alloc-a1")
		}, []*needs.Instance{svc("a.0", "m1", "alloc-a0", needs.Running), svc("a.1", "m2", "alloc-a1", needs.Running)}, ""},
		{"approved twice at once", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.approved("m1", "alloc-a0")
			l.granted("m2", "alloc-b0", "a.0")
			l.approved("m2", "alloc-b0")
		}, nil, "instance a.0 approved on master m2 while running on master m1"},
		{"allocation reused", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.granted("m2", "alloc-a0", "a.0")
		}, nil, "allocation alloc-a0 granted twice"},
		{"approved on the wrong master", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.approved("m2", "alloc-a0")
		}, nil, "allocation alloc-a0 of master m1 approved on master m2"},
		{"lost", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.approved("m1", "alloc-a0")
		}, []*needs.Instance{svc("a.0", "m1", "alloc-a0", needs.Running)}, "instance a.1 runs nowhere"},
		{"not approved", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
		}, nil, "instance a.0 on master m1 is not approved"},
		{"listed twice", func(l *ledger) {}, []*needs.Instance{svc("a.0", "m1", "x", needs.Running), svc("a.0", "m1", "x", needs.Running)},
			"lists instance a.0 twice"},
		{"listed on another master", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.approved("m1", "alloc-a0")
		}, []*needs.Instance{svc("a.0", "m2", "alloc-a0", needs.Running)}, "places instance a.0 on master m2; it runs on master m1"},
		{"listed still on a lost master", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
			l.approved("m1", "alloc-a0")
			l.lose([]string{"m1"})
		}, []*needs.Instance{svc("a.0", "m1", "alloc-a0", needs.Running)}, "(lost: true)"},
		{"listed unapproved", func(l *ledger) {
			l.granted("m1", "alloc-a0", "a.0")
		}, []*needs.Instance{svc("a.0", "m1", "alloc-a0", needs.Starting)}, "shows instance a.0 starting, want running"},
		{"not listed", func(l *ledger) {}, nil, "does not list instance a.1"},
		{"unexpected", func(l *ledger) {
			l.granted("m1", "alloc-z", "z.0")
		}, nil, "master m1 runs z.0 (allocation alloc-z), which is not expected"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			tt.play(l)
			l.check(expected, tt.services, "test")
			got, _ := l.violations()
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("violations %q, want none", got)
				}
				return
			}
			for _, v := range got {
				if strings.Contains(v, tt.want) {
					return
				}
			}
			t.Fatalf("violations %q, want one containing %q", got, tt.want)
		})
	}
}

// TestLedgerLoss: instances on lost masters count as not running, their
// replacements on live masters as running, and a replacement approved
// while the lost copy still runs is no violation.
func TestLedgerLoss(t *testing.T) {
	l := newLedger()
	l.granted("m1", "alloc-1", "a.0")
	l.approved("m1", "alloc-1")
	l.granted("m2", "alloc-2", "a.1")
	l.approved("m2", "alloc-2")
	held := l.lose([]string{"m1"})
	if len(held) != 1 || held[0] != "a.0" {
		t.Fatalf("lose(m1) = %q, want [a.0]", held)
	}
	if n := l.running([]string{"a.0", "a.1"}); n != 1 {
		t.Fatalf("running = %d after the loss, want 1", n)
	}
	l.granted("m2", "alloc-3", "a.0")
	l.approved("m2", "alloc-3")
	if n := l.running([]string{"a.0", "a.1"}); n != 2 {
		t.Fatalf("running = %d after the replacement, want 2", n)
	}
	if got, n := l.violations(); n != 0 {
		t.Fatalf("violations %q, want none", got)
	}
	if inst := l.stopped("alloc-2"); inst != "a.1" {
		t.Fatalf("stopped(alloc-2) = %q, want a.1", inst)
	}
	if n := l.running([]string{"a.1"}); n != 0 {
		t.Fatalf("a.1 still counts as running after its stop")
	}
}

// TestDistOf: percentiles are the smallest samples that at least p% of
// them do not exceed.
func TestDistOf(t *testing.T) {
	var ds []int
	for i := 100; i >= 1; i-- {
		ds = append(ds, i)
	}
	d := distOf(durations(ds))
	if d.N != 100 || d.P50 != 50 || d.P99 != 99 || d.Max != 100 {
		t.Fatalf("distOf(1..100) = %+v, want n 100, p50 50, p99 99, max 100", d)
	}
	if d := distOf(durations([]int{7})); d.P50 != 7 || d.P99 != 7 {
		t.Fatalf("distOf([7]) = %+v", d)
	}
	if d := distOf(nil); d.N != 0 {
		t.Fatalf("distOf(nil) = %+v", d)
	}
}

func durations(ns []int) []time.Duration {
	out := make([]time.Duration, len(ns))
	for i, n := range ns {
		out[i] = time.Duration(n)
	}
	return out
}

func TestProbeControl(t *testing.T) {
	a := newAPILoad("127.0.0.1:1", "t", []string{"a", "b"}, time.Second, 1)
	if err := readProbeControl(strings.NewReader("phase loss\ndeclared 2\n"), a); err != nil {
		t.Fatal(err)
	}
	if a.phase != "loss" || a.declared.Load() != 2 {
		t.Fatalf("phase %q, declared %d; want loss, 2", a.phase, a.declared.Load())
	}
	for _, bad := range []string{"declared -1\n", "declared x\n", "stop\n"} {
		err := readProbeControl(strings.NewReader(bad), a)
		if err == nil || !strings.Contains(err.Error(), strings.Fields(bad)[0]) {
			t.Errorf("%q: err %v, want one naming the line", bad, err)
		}
	}
}
