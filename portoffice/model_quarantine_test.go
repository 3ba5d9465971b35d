package portoffice

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"berth/needs"
)

// qmodel is the obvious implementation of leases with quarantine: maps of
// leases, quarantine ends and ports held by outside processes.
type qmodel struct {
	leases  model
	until   map[int]time.Time
	proto   map[int]needs.Protocol
	outside map[int]bool
	period  time.Duration
}

func (m *qmodel) inQuarantine(port int, now time.Time) bool {
	u, ok := m.until[port]
	return ok && now.Before(u)
}

func (m *qmodel) quarantine(p needs.Protocol, port int, now time.Time) {
	m.until[port], m.proto[port] = now.Add(m.period), p
}

// lease scans each range from its start: leased ports and ports in
// quarantine are skipped, ports held outside are put in quarantine and
// skipped, the first other port is taken. Quarantines found are kept even
// when the call fails; leases only when it succeeds.
func (m *qmodel) lease(owner string, protos []needs.Protocol, ranges map[needs.Protocol]Range, now time.Time) (map[needs.Protocol]int, error) {
	got := map[needs.Protocol]int{}
	var fresh []Lease
	for _, p := range protos {
		if _, ok := got[p]; ok {
			continue
		}
		if l, ok := m.leases.held(owner, p); ok {
			got[p] = l.Port
			continue
		}
		r, ok := ranges[p]
		if !ok {
			return nil, ErrNoRange
		}
		port := r.Start
		for ; port <= r.End(); port++ {
			if _, ok := m.leases[port]; ok || m.inQuarantine(port, now) {
				continue
			}
			if m.outside[port] {
				m.quarantine(p, port, now)
				continue
			}
			break
		}
		if port > r.End() {
			return nil, ErrExhausted
		}
		got[p] = port
		fresh = append(fresh, Lease{Proto: p, Port: port, Owner: owner})
	}
	for _, l := range fresh {
		m.leases[l.Port] = l
	}
	return got, nil
}

// free quarantines the freed ports that are held outside.
func (m *qmodel) free(ls []Lease, now time.Time) {
	for _, l := range ls {
		if !m.inQuarantine(l.Port, now) && m.outside[l.Port] {
			m.quarantine(l.Proto, l.Port, now)
		}
	}
}

func (m *qmodel) quarantined(now time.Time) []Quarantine {
	var qs []Quarantine
	for port, u := range m.until {
		if now.Before(u) {
			qs = append(qs, Quarantine{Proto: m.proto[port], Port: port, Until: u})
		}
	}
	slices.SortFunc(qs, compareQuarantine)
	return qs
}

// TestModelQuarantine runs random leases, releases, reclaims, explicit
// quarantines, outside processes taking and freeing ports, clock steps and
// reopens against qmodel, checking leases, quarantine and Free after every
// step.
func TestModelQuarantine(t *testing.T) {
	steps := 3000
	if testing.Short() {
		steps = 300
	}
	ranges := map[needs.Protocol]Range{needs.TCP: {20000, 8}, needs.HTTP: {20010, 5}, needs.WS: {20020, 3}}
	all := slices.Concat(portsOf(ranges[needs.TCP]), portsOf(ranges[needs.HTTP]), portsOf(ranges[needs.WS]))
	rng := rand.New(rand.NewPCG(3, 5))
	x := newOutside()
	clock := newFakeClock()
	m := &qmodel{leases: model{}, until: map[int]time.Time{}, proto: map[int]needs.Protocol{}, outside: x.held, period: 10 * time.Second}
	path := tempPath(t)
	open := func() *Office {
		return MustOpenOffice(t, path, Options{Ranges: ranges, NoSync: true, Probe: x.probe, Now: clock.Now, Quarantine: m.period})
	}
	o := open()
	stats := map[string]int{}
	for step := range steps {
		owner := fmt.Sprint("o", rng.IntN(12))
		now := clock.Now()
		switch n := rng.IntN(100); {
		case n < 40:
			protos := make([]needs.Protocol, rng.IntN(3)+1)
			for i := range protos {
				protos[i] = needs.Protocols[rng.IntN(len(needs.Protocols))]
			}
			want, wantErr := m.lease(owner, protos, ranges, now)
			got, err := o.Lease(owner, protos)
			if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) || !maps.Equal(got, want) {
				t.Fatalf("step %d: Lease(%s, %v) = %v, %v; want %v, %v", step, owner, protos, got, err, want, wantErr)
			}
			stats[fmt.Sprint("lease ", err == nil)]++
		case n < 65:
			ls := m.leases.release(owner)
			m.free(ls, now)
			var want []int
			for _, l := range ls {
				want = append(want, l.Port)
			}
			slices.Sort(want)
			if got, err := o.Release(owner); err != nil || !slices.Equal(got, want) {
				t.Fatalf("step %d: Release(%s) = %v, %v; want %v", step, owner, got, err, want)
			}
		case n < 70:
			dead := fmt.Sprint("o", rng.IntN(12))
			want := m.leases.release(dead)
			m.free(want, now)
			got, err := o.Reclaim(func(owner string) bool { return owner != dead })
			if err != nil || !sameLeases(got, want) {
				t.Fatalf("step %d: Reclaim(%s) = %v, %v; want %v", step, dead, got, err, want)
			}
		case n < 75:
			port := all[rng.IntN(len(all))]
			p := protoOf(ranges, port)
			m.quarantine(p, port, now)
			if _, err := o.Quarantine(p, port, "model"); err != nil {
				t.Fatalf("step %d: Quarantine(%d): %v", step, port, err)
			}
			stats["quarantine"]++
		case n < 90:
			port := all[rng.IntN(len(all))]
			x.set(port, !m.outside[port])
			stats["outside toggles"]++
		case n < 98:
			clock.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
		default:
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			o = open()
			stats["reopen"]++
		}
		checkQModel(t, step, o, m, ranges, clock.Now())
		stats["max in quarantine"] = max(stats["max in quarantine"], len(o.Quarantined()))
	}
	t.Log(stats)
	if stats["max in quarantine"] == 0 || stats["lease false"] == 0 {
		t.Fatalf("the walk never reached quarantine or exhaustion: %v", stats)
	}
}

func checkQModel(t *testing.T, step int, o *Office, m *qmodel, ranges map[needs.Protocol]Range, now time.Time) {
	t.Helper()
	if got, want := o.Leases(), m.leases.sorted(); !sameLeases(got, want) {
		t.Fatalf("step %d: Leases:\n got  %v\n want %v", step, got, want)
	}
	got, want := o.Quarantined(), m.quarantined(now)
	if !slices.EqualFunc(got, want, func(a, b Quarantine) bool {
		return a.Proto == b.Proto && a.Port == b.Port && a.Until.Equal(b.Until)
	}) {
		t.Fatalf("step %d: Quarantined:\n got  %v\n want %v", step, got, want)
	}
	for p, r := range ranges {
		want := r.Size
		for _, port := range portsOf(r) {
			if _, ok := m.leases[port]; ok || m.inQuarantine(port, now) {
				want--
			}
		}
		if got := o.Free(p); got != want {
			t.Fatalf("step %d: Free(%s) = %d, want %d", step, p, got, want)
		}
	}
}

func portsOf(r Range) []int {
	var ps []int
	for p := r.Start; p <= r.End(); p++ {
		ps = append(ps, p)
	}
	return ps
}

func protoOf(ranges map[needs.Protocol]Range, port int) needs.Protocol {
	for p, r := range ranges {
		if r.Contains(port) {
			return p
		}
	}
	return ""
}
