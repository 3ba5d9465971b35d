package portoffice

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"berth/internal/freeports"
	"berth/needs"
)

var (
	tcpHTTP = []needs.Protocol{needs.TCP, needs.HTTP}
	onlyTCP = []needs.Protocol{needs.TCP}
)

func mustLease(tb testing.TB, o *Office, owner string, protos ...needs.Protocol) map[needs.Protocol]int {
	tb.Helper()
	got, err := o.Lease(owner, protos)
	if err != nil {
		tb.Fatalf("Lease(%s, %v): %v", owner, protos, err)
	}
	return got
}

func TestLeaseExhausted(t *testing.T) {
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.HTTP: {16000, 3}}, Probe: nilProbe})
	for i, want := range []int{16000, 16001, 16002} {
		if got := mustLease(t, o, fmt.Sprint("a", i), needs.HTTP); got[needs.HTTP] != want {
			t.Fatalf("lease %d = %v, want http %d", i, got, want)
		}
	}
	_, err := o.Lease("a3", []needs.Protocol{needs.HTTP})
	var ee *ExhaustedError
	if !errors.As(err, &ee) || !errors.Is(err, ErrExhausted) {
		t.Fatalf("4th lease: %v, want *ExhaustedError", err)
	}
	if ee.Proto != needs.HTTP || ee.Range != (Range{16000, 3}) || ee.Leased != 3 {
		t.Fatalf("ExhaustedError = %+v", ee)
	}
	if want := "http range 16000-16002 exhausted (3 leased, 0 bindable)"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if n := o.Free(needs.HTTP); n != 0 {
		t.Fatalf("Free = %d, want 0", n)
	}
	if ports, err := o.Release("a1"); err != nil || !slices.Equal(ports, []int{16001}) {
		t.Fatalf("Release(a1) = %v, %v", ports, err)
	}
	if got := mustLease(t, o, "a4", needs.HTTP); got[needs.HTTP] != 16001 {
		t.Fatalf("lease after release = %v, want http 16001", got)
	}
}

// TestLeaseSkipsBoundPort uses the real bind check on 127.0.0.1: the port
// another process holds is skipped and put in quarantine, so the next
// Lease does not probe it again.
func TestLeaseSkipsBoundPort(t *testing.T) {
	r := Range{Start: freeports.Block(t, 3), Size: 3}
	listen(t, r.Start+1)
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.TCP: r}, Host: "127.0.0.1"})
	if got := mustLease(t, o, "a", needs.TCP); got[needs.TCP] != r.Start {
		t.Fatalf("first lease = %v, want %d", got, r.Start)
	}
	if got := mustLease(t, o, "b", needs.TCP); got[needs.TCP] != r.Start+2 {
		t.Fatalf("second lease = %v, want %d (skipping the bound %d)", got, r.Start+2, r.Start+1)
	}
	if qs := o.Quarantined(); len(qs) != 1 || qs[0].Port != r.Start+1 || qs[0].Proto != needs.TCP {
		t.Fatalf("Quarantined = %+v, want port %d", qs, r.Start+1)
	}
	if n := o.Free(needs.TCP); n != 0 {
		t.Fatalf("Free = %d, want 0 (2 leased, 1 in quarantine)", n)
	}
	_, err := o.Lease("c", onlyTCP)
	var ee *ExhaustedError
	if !errors.As(err, &ee) || ee.Leased != 2 || ee.Quarantined != 1 || ee.Unbindable != 0 {
		t.Fatalf("third lease: %v (%+v), want exhausted with 2 leased and 1 in quarantine", err, ee)
	}
	if want := "(2 leased, 1 in quarantine until "; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	t.Log(err)
}

func TestLeaseAllOrNothing(t *testing.T) {
	path := tempPath(t)
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 2}, needs.HTTP: {17000, 1}}, Probe: nilProbe}
	o := MustOpenOffice(t, path, opts)
	mustLease(t, o, "x", needs.HTTP)
	if _, err := o.Lease("y", tcpHTTP); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Lease(y): %v, want ErrExhausted", err)
	}
	if _, err := o.Lease("z", []needs.Protocol{needs.TCP, needs.WS}); !errors.Is(err, ErrNoRange) {
		t.Fatalf("Lease(z): %v, want ErrNoRange", err)
	}
	if got := o.Owned("y"); got != nil {
		t.Fatalf("y owns %v after a failed lease", got)
	}
	if n := o.Free(needs.TCP); n != 2 {
		t.Fatalf("Free(tcp) = %d, want 2", n)
	}
	o.Close()
	ls, err := readFile(path)
	if err != nil || len(ls) != 1 || ls[0].Owner != "x" {
		t.Fatalf("file holds %v, %v; want only x's http lease", ls, err)
	}
}

func TestLeaseEdges(t *testing.T) {
	path := tempPath(t)
	o := MustOpenOffice(t, path, Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}}, Probe: nilProbe})
	if got, err := o.Lease("a", nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Lease(a, nil) = %v, %v; want an empty map", got, err)
	}
	if _, err := o.Lease("", onlyTCP); !errors.Is(err, needs.ErrInvalid) {
		t.Fatalf("Lease with no owner: %v", err)
	}
	if got := mustLease(t, o, "a", needs.TCP, needs.TCP); len(got) != 1 || got[needs.TCP] != 16000 {
		t.Fatalf("Lease(a, tcp, tcp) = %v", got)
	}
	if ports, err := o.Release("nobody"); ports != nil || err != nil {
		t.Fatalf("Release(nobody) = %v, %v", ports, err)
	}
	if n := o.Free("udp"); n != 0 {
		t.Fatalf("Free(udp) = %d", n)
	}
}

func TestLeaseConcurrent(t *testing.T) {
	const workers, each = 8, 50
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.TCP: {20000, workers * each}}, NoSync: true, Probe: nilProbe})
	ports := make([][]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				got, err := o.Lease(fmt.Sprintf("w%d-%d", w, i), onlyTCP)
				if err != nil {
					errs[w] = err
					return
				}
				ports[w] = append(ports[w], got[needs.TCP])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	all := slices.Sorted(slices.Values(slices.Concat(ports...)))
	n := len(all)
	if distinct := len(slices.Compact(all)); n != workers*each || distinct != n {
		t.Fatalf("got %d ports, %d distinct; want %d", n, distinct, workers*each)
	}
	if n := len(o.Leases()); n != workers*each {
		t.Fatalf("%d leases, want %d", n, workers*each)
	}
	if _, err := o.Lease("one-too-many", onlyTCP); !errors.Is(err, ErrExhausted) {
		t.Fatalf("lease %d: %v, want ErrExhausted", workers*each+1, err)
	}
}
