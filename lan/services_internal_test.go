package lan

import (
	"fmt"
	"testing"

	"berth/needs"
	"berth/pipes"
)

// TestServicesPartsStayUnderTheFrameLimit: a full set and a diff of many
// instances are split into parts of at most servicesPerPart entries, each
// valid and encodable, and the diff lists exactly what changed.
func TestServicesPartsStayUnderTheFrameLimit(t *testing.T) {
	p := newServicesPush()
	set := func(n int, alloc string) []pipes.Service {
		out := make([]pipes.Service, n)
		for i := range out {
			out[i] = pipes.Service{Need: "web", Instance: fmt.Sprintf("web.%d", i), Alloc: fmt.Sprintf("%s%08d", alloc, i),
				Master: "m1", Address: "10.0.0.1", Ports: map[needs.Protocol]int{needs.HTTP: 1 + i%65535}}
		}
		return out
	}
	check := func(parts []pipes.Services, wantParts, wantInstances, wantRemoved int) {
		t.Helper()
		if len(parts) != wantParts {
			t.Fatalf("%d parts, want %d", len(parts), wantParts)
		}
		ins, rm := 0, 0
		for i := range parts {
			m, err := pipes.New(pipes.TypeServices, &parts[i])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pipes.Prepare(m); err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			var back pipes.Services
			if err := m.Decode(&back); err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			if back.Part != i || back.Parts != wantParts || back.Rev != p.rev {
				t.Fatalf("part %d numbered %d/%d rev %d", i, back.Part, back.Parts, back.Rev)
			}
			ins, rm = ins+len(back.Instances), rm+len(back.Removed)
		}
		if ins != wantInstances || rm != wantRemoved {
			t.Fatalf("%d instances, %d removed; want %d, %d", ins, rm, wantInstances, wantRemoved)
		}
	}
	changed := p.update(map[string][]pipes.Service{"web": set(2500, "a")}, true)
	base := p.rev
	p.rev++
	check(p.diff(base, changed), 3, 2500, 0)
	check(p.full(), 3, 2500, 0)

	// 10 move to new allocations, 500 stop.
	next := set(2000, "a")
	for i := range 10 {
		next[i].Alloc = fmt.Sprintf("b%08d", i)
	}
	changed = p.update(map[string][]pipes.Service{"web": next}, false)
	base = p.rev
	p.rev++
	check(p.diff(base, changed), 1, 10, 500)
	if got := p.update(map[string][]pipes.Service{"web": set(2000, "a")[10:]}, false); len(got) != 1 {
		t.Fatalf("update of a changed need: %d changed", len(got))
	}
	if got := p.update(map[string][]pipes.Service{"web": set(2000, "a")[10:]}, false); len(got) != 0 {
		t.Fatalf("update with the same set: %d changed, want 0", len(got))
	}
}
