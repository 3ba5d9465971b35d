package freeports

import (
	"errors"
	"net"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

func TestSearchSpans(t *testing.T) {
	got := searchSpans([2]int{32768, 60999})
	want := [][2]int{{1024, 14999}, {18000, 23551}, {23553, 32767}, {61000, 65535}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("searchSpans = %v, want %v", got, want)
	}
	// An ephemeral range over the defaults leaves what is on either side.
	got = searchSpans([2]int{10000, 20000})
	want = [][2]int{{1024, 9999}, {20001, 23551}, {23553, 65535}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("searchSpans = %v, want %v", got, want)
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
