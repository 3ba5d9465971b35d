package portoffice

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"berth/needs"
)

// model is the obvious implementation: a map from port to lease.
type model map[int]Lease

// lease returns what Office.Lease should: held ports again, else the lowest
// port of the range not in m, and which error (nil, ErrNoRange or
// ErrExhausted) ends the call. It changes m only on success.
func (m model) lease(owner string, protos []needs.Protocol, ranges map[needs.Protocol]Range) (map[needs.Protocol]int, error) {
	got := map[needs.Protocol]int{}
	var fresh []Lease
	for _, p := range protos {
		if _, ok := got[p]; ok {
			continue
		}
		if l, ok := m.held(owner, p); ok {
			got[p] = l.Port
			continue
		}
		r, ok := ranges[p]
		if !ok {
			return nil, ErrNoRange
		}
		port := r.Start
		for ; port <= r.End(); port++ {
			if _, ok := m[port]; !ok {
				break
			}
		}
		if port > r.End() {
			return nil, ErrExhausted
		}
		got[p] = port
		fresh = append(fresh, Lease{Proto: p, Port: port, Owner: owner})
	}
	for _, l := range fresh {
		m[l.Port] = l
	}
	return got, nil
}

func (m model) held(owner string, p needs.Protocol) (Lease, bool) {
	for _, l := range m {
		if l.Owner == owner && l.Proto == p {
			return l, true
		}
	}
	return Lease{}, false
}

// release removes owner's leases from m and returns them sorted.
func (m model) release(owner string) []Lease {
	var ls []Lease
	for port, l := range m {
		if l.Owner == owner {
			ls = append(ls, l)
			delete(m, port)
		}
	}
	slices.SortFunc(ls, compareLeases)
	return ls
}

func (m model) sorted() []Lease {
	return slices.SortedFunc(maps.Values(m), compareLeases)
}

// TestModel runs random leases, releases, reclaims and reopens (with
// changing ranges) against the model, checking after every step.
func TestModel(t *testing.T) {
	steps := 2000
	if testing.Short() {
		steps = 200
	}
	configs := []map[needs.Protocol]Range{
		{needs.TCP: {20000, 8}, needs.HTTP: {20010, 5}, needs.WS: {20020, 3}},
		{needs.TCP: {20004, 8}, needs.HTTP: {20012, 5}}, // over old leases; no ws
	}
	rng := rand.New(rand.NewPCG(7, 11))
	path := tempPath(t)
	cfg := configs[0]
	open := func() *Office {
		return MustOpenOffice(t, path, Options{Ranges: cfg, NoSync: true, Probe: nilProbe})
	}
	o, m := open(), model{}
	stats := map[string]int{}
	for step := range steps {
		owner := fmt.Sprint("o", rng.IntN(20))
		switch x := rng.IntN(100); {
		case x < 55:
			protos := make([]needs.Protocol, rng.IntN(4))
			for i := range protos {
				protos[i] = needs.Protocols[rng.IntN(len(needs.Protocols))]
			}
			want, wantErr := m.lease(owner, protos, cfg)
			got, err := o.Lease(owner, protos)
			if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) || !maps.Equal(got, want) {
				t.Fatalf("step %d: Lease(%s, %v) = %v, %v; want %v, %v", step, owner, protos, got, err, want, wantErr)
			}
			stats[fmt.Sprint("lease ", err == nil, " ", wantErr)]++
		case x < 90:
			var want []int
			for _, l := range m.release(owner) {
				want = append(want, l.Port)
			}
			slices.Sort(want)
			if got, err := o.Release(owner); err != nil || !slices.Equal(got, want) {
				t.Fatalf("step %d: Release(%s) = %v, %v; want %v", step, owner, got, err, want)
			}
		case x < 95:
			dead := map[string]bool{}
			var want []Lease
			for i := range 20 {
				if rng.IntN(4) == 0 {
					dead[fmt.Sprint("o", i)] = true
					want = append(want, m.release(fmt.Sprint("o", i))...)
				}
			}
			slices.SortFunc(want, compareLeases)
			got, err := o.Reclaim(func(owner string) bool { return !dead[owner] })
			if err != nil || !sameLeases(got, want) {
				t.Fatalf("step %d: Reclaim = %v, %v; want %v", step, got, err, want)
			}
		default:
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			cfg = configs[rng.IntN(len(configs))]
			o = open()
			stats["reopen"]++
		}
		checkModel(t, step, o, m, cfg)
	}
	t.Log(stats)
}

func checkModel(t *testing.T, step int, o *Office, m model, cfg map[needs.Protocol]Range) {
	t.Helper()
	if got, want := o.Leases(), m.sorted(); !sameLeases(got, want) {
		t.Fatalf("step %d: Leases:\n got  %v\n want %v", step, got, want)
	}
	for p, r := range cfg {
		want := r.Size
		for port := range m {
			if r.Contains(port) {
				want--
			}
		}
		if got := o.Free(p); got != want {
			t.Fatalf("step %d: Free(%s) = %d, want %d", step, p, got, want)
		}
	}
}

// sameLeases compares everything but Since, which the model does not know;
// it must be set.
func sameLeases(got, want []Lease) bool {
	return slices.EqualFunc(got, want, func(a, b Lease) bool {
		return a.Proto == b.Proto && a.Port == b.Port && a.Owner == b.Owner && !a.Since.IsZero()
	})
}
