package main

import (
	"fmt"
	"slices"
	"sync"

	"berth/needs"
)

// ledger is the simulation's own record of which fake child runs where:
// every grant the simulated masters received, every approval, every stop.
// It is the yardstick the lanmanager is checked against. All methods are
// safe for concurrent use.
type ledger struct {
	mu       sync.Mutex          // Protects following.
	children map[string]*child   // by allocation id, until stopped
	byInst   map[string][]*child // instance → its children, until stopped
	lost     map[string]bool     // names of masters cut off by the scenario
	bad      []string            // violations, in the order seen
	badCount int
	grants   int
	stops    int
	stray    int // stops or approvals of allocations the ledger does not hold
}

// child is one fake child: granted, then approved, until stopped.
type child struct {
	alloc, instance, master string
	approved                bool
}

// maxViolations bounds how many violations are kept verbatim.
const maxViolations = 50

func newLedger() *ledger {
	return &ledger{children: map[string]*child{}, byInst: map[string][]*child{}, lost: map[string]bool{}}
}

// violateLocked records a broken invariant.
func (l *ledger) violateLocked(format string, args ...any) {
	l.badCount++
	if len(l.bad) < maxViolations {
		l.bad = append(l.bad, fmt.Sprintf(format, args...))
	}
}

// violate records a broken invariant found outside the ledger.
func (l *ledger) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violateLocked(format, args...)
}

// granted records a grant to master.
func (l *ledger) granted(master, alloc, instance string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.grants++
	if _, ok := l.children[alloc]; ok {
		l.violateLocked("allocation %s granted twice (instance %s, master %s)", alloc, instance, master)
		return
	}
	c := &child{alloc: alloc, instance: instance, master: master}
	l.children[alloc] = c
	l.byInst[instance] = append(l.byInst[instance], c)
}

// approved records an approval. Two approved children of one instance on
// masters that are not lost break "placed exactly once".
func (l *ledger) approved(master, alloc string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.children[alloc]
	switch {
	case !ok:
		l.stray++
		return
	case c.master != master:
		l.violateLocked("allocation %s of master %s approved on master %s", alloc, c.master, master)
		return
	case c.approved:
		return
	}
	c.approved = true
	for _, o := range l.byInst[c.instance] {
		if o != c && o.approved && !l.lost[o.master] && !l.lost[c.master] {
			l.violateLocked("instance %s approved on master %s while running on master %s", c.instance, c.master, o.master)
		}
	}
}

// stopped forgets a child its master was told to stop; it returns the
// instance, "" if the allocation was unknown.
func (l *ledger) stopped(alloc string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stops++
	c, ok := l.children[alloc]
	if !ok {
		l.stray++
		return ""
	}
	delete(l.children, alloc)
	l.byInst[c.instance] = slices.DeleteFunc(l.byInst[c.instance], func(o *child) bool { return o == c })
	return c.instance
}

// lose marks masters as cut off and returns the instances their approved
// children held.
func (l *ledger) lose(names []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var held []string
	for _, n := range names {
		l.lost[n] = true
	}
	for _, c := range l.children {
		if l.lost[c.master] && c.approved {
			held = append(held, c.instance)
		}
	}
	slices.Sort(held)
	return held
}

// runningLocked reports whether instance has an approved child on a master
// that is not lost.
func (l *ledger) runningLocked(instance string) bool {
	for _, c := range l.byInst[instance] {
		if c.approved && !l.lost[c.master] {
			return true
		}
	}
	return false
}

// running counts the instances of names that run on masters not lost.
func (l *ledger) running(names []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, name := range names {
		if l.runningLocked(name) {
			n++
		}
	}
	return n
}

// counts returns grants, stops and stray messages so far.
func (l *ledger) counts() (grants, stops, stray int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.grants, l.stops, l.stray
}

// violations returns the violations seen so far and how many there were.
func (l *ledger) violations() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.bad), l.badCount
}

// check compares a settled system with the ledger: every expected instance
// has exactly one child on the masters not lost, approved, and nothing else
// runs there; the lanmanager's services (GET /v1/services) list each
// instance once, running, under that child's allocation on that master.
// Violations are recorded and returned.
func (l *ledger) check(expected []string, services []*needs.Instance, at string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	before := l.badCount
	want := make(map[string]bool, len(expected))
	for _, name := range expected {
		want[name] = true
		var live []*child
		for _, c := range l.byInst[name] {
			if !l.lost[c.master] {
				live = append(live, c)
			}
		}
		switch {
		case len(live) == 0:
			l.violateLocked("%s: instance %s runs nowhere", at, name)
		case len(live) > 1:
			l.violateLocked("%s: instance %s has %d children on live masters", at, name, len(live))
		case !live[0].approved:
			l.violateLocked("%s: instance %s on master %s is not approved", at, name, live[0].master)
		}
	}
	for _, c := range l.children {
		if !want[c.instance] && !l.lost[c.master] {
			l.violateLocked("%s: master %s runs %s (allocation %s), which is not expected", at, c.master, c.instance, c.alloc)
		}
	}
	seen := map[string]bool{}
	for _, in := range services {
		l.checkServiceLocked(in, want, seen, at)
	}
	for _, name := range expected {
		if !seen[name] {
			l.violateLocked("%s: the lanmanager does not list instance %s as a service", at, name)
		}
	}
	if l.badCount == before {
		return nil
	}
	return slices.Clone(l.bad[min(before, len(l.bad)):])
}

// checkServiceLocked checks one entry of the lanmanager's service list.
func (l *ledger) checkServiceLocked(in *needs.Instance, want, seen map[string]bool, at string) {
	switch {
	case !want[in.Name]:
		l.violateLocked("%s: the lanmanager lists unexpected instance %s (%s on master %s)", at, in.Name, in.State, in.Master)
		return
	case seen[in.Name]:
		l.violateLocked("%s: the lanmanager lists instance %s twice", at, in.Name)
		return
	}
	seen[in.Name] = true
	c, ok := l.children[in.Alloc]
	switch {
	case in.State != needs.Running:
		l.violateLocked("%s: the lanmanager shows instance %s %s, want running", at, in.Name, in.State)
	case !ok || c.instance != in.Name:
		l.violateLocked("%s: the lanmanager places instance %s under allocation %s, which no simulated master runs for it", at, in.Name, in.Alloc)
	case c.master != in.Master || l.lost[c.master]:
		l.violateLocked("%s: the lanmanager places instance %s on master %s; it runs on master %s (lost: %v)", at, in.Name, in.Master, c.master, l.lost[c.master])
	}
}
