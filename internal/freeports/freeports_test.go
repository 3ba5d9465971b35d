package freeports

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// TestSearchSpans: the spans cover exactly the ports of 1024-65535 that are
// neither ephemeral nor avoided; in particular no port a browser refuses.
func TestSearchSpans(t *testing.T) {
	for _, eph := range [][2]int{{32768, 60999}, {10000, 20000}} {
		in := map[int]bool{}
		for _, s := range searchSpans(eph) {
			if s[0] > s[1] {
				t.Fatalf("ephemeral %v: empty span %v", eph, s)
			}
			for p := s[0]; p <= s[1]; p++ {
				in[p] = true
			}
		}
		for p := 1024; p <= 65535; p++ {
			want := p < eph[0] || p > eph[1]
			for _, a := range avoid {
				if p >= a[0] && p <= a[1] {
					want = false
				}
			}
			if in[p] != want {
				t.Fatalf("ephemeral %v: port %d in the spans is %v, want %v", eph, p, in[p], want)
			}
		}
		for _, bad := range []int{10080, 6667, 5060, 2049, 15000, 23552} {
			if in[bad] {
				t.Errorf("ephemeral %v: port %d can be handed out", eph, bad)
			}
		}
		if !in[1024] || !in[65535] {
			t.Errorf("ephemeral %v: the ends of the range are missing", eph)
		}
	}
}

func TestRandomStartFits(t *testing.T) {
	spans := [][2]int{{100, 104}, {200, 201}}
	seen := map[int]bool{}
	for range 1000 {
		s, ok := randomStart(spans, 3)
		if !ok || !(s >= 100 && s+2 <= 104) {
			t.Fatalf("randomStart = %d, %v; a block of 3 fits only at 100-102", s, ok)
		}
		seen[s] = true
	}
	if len(seen) != 3 {
		t.Errorf("starts seen %v, want 100, 101 and 102", seen)
	}
	if s, ok := randomStart(spans, 6); ok {
		t.Errorf("randomStart of 6 = %d, want none", s)
	}
}

// TestBlocksDoNotOverlap: blocks taken at the same time, by tests of one
// process, never share a port, and every port bound when handed out.
func TestBlocksDoNotOverlap(t *testing.T) {
	const callers, n = 8, 40
	starts := make([]int, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { starts[i] = Block(t, n) })
	}
	wg.Wait()
	owner := map[int]int{}
	for i, s := range starts {
		for p := s; p < s+n; p++ {
			if j, ok := owner[p]; ok {
				t.Fatalf("port %d handed to callers %d and %d", p, j, i)
			}
			owner[p] = i
			if p < 1024 || p > 65535 || (p >= 15000 && p <= 17999) {
				t.Errorf("port %d outside the search spans", p)
			}
		}
	}
}

// TestBlockHeldIsNotHandedOut: while a test holds a block, its chunks'
// locks are taken, so nobody else can lock them.
func TestBlockHeldIsNotHandedOut(t *testing.T) {
	start := Block(t, 20)
	dir, err := lockDir()
	if err != nil {
		t.Fatal(err)
	}
	if held, err := lockChunks(dir, start, 20); !errors.Is(err, syscall.EWOULDBLOCK) {
		unlock(held)
		t.Fatalf("locking ports %d-%d again while held: %v, want EWOULDBLOCK", start, start+19, err)
	}
	for p := start; p < start+20; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d of the block does not bind: %v", p, err)
		}
		l.Close()
	}
}

// TestRefusing: a connect to the address is refused, and the port cannot
// be bound by anyone else while the test runs.
func TestRefusing(t *testing.T) {
	addr := Refusing(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded, want it refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("listen on %s succeeded while it is held", addr)
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listen on %s: %v, want address in use", addr, err)
	}
}
