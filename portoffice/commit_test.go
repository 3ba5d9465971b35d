package portoffice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/internal/freeports"
	"berth/internal/smalldisk"
	"berth/needs"
)

var onlyHTTP = []needs.Protocol{needs.HTTP}

// TestGroupCommit: leases that arrive while a transaction is being written
// are all accepted meanwhile and share the next transaction, and none
// returns its port before the transaction holding its lease is committed.
// The old Office wrote each lease in a transaction of its own under its
// lock, so the second lease waited for the first one's commit.
func TestGroupCommit(t *testing.T) {
	const n = 32
	start := freeports.Block(t, n+8)
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.HTTP: {start, n + 8}}, Host: "127.0.0.1"})
	before := txID(t, o)
	w := holdWriter(t, o)
	var returned atomic.Int32
	ports := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			owner := fmt.Sprintf("a%02d", i)
			got, err := o.Lease(owner, onlyHTTP)
			returned.Add(1)
			if err == nil {
				err = checkCommitted(o, needs.HTTP, got[needs.HTTP], owner)
			}
			ports[i], errs[i] = got[needs.HTTP], err
		})
	}
	accepted := eventually(10*time.Second, func() bool { return len(o.Leases()) == n })
	early := returned.Load()
	w.release()
	wg.Wait()
	if !accepted {
		t.Fatalf("%d leases were not all accepted while a transaction was being written", n)
	}
	if early != 0 {
		t.Fatalf("%d leases returned before the transaction holding them was committed", early)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ports)
	if len(slices.Compact(slices.Clone(ports))) != n || ports[0] < start || ports[n-1] > start+n+7 {
		t.Fatalf("ports %v: want %d distinct ports of %d-%d", ports, n, start, start+n+7)
	}
	if commits := txID(t, o) - before; commits > 2 {
		t.Fatalf("%d concurrent leases took %d transactions, want at most 2", n, commits)
	}
}

// TestCloseWaitsForAcceptedWrites: Close lets the leases it finds waiting
// for their transaction be committed, and returns; they are in the file.
func TestCloseWaitsForAcceptedWrites(t *testing.T) {
	const n = 8
	path := tempPath(t)
	o := MustOpenOffice(t, path, Options{Ranges: map[needs.Protocol]Range{needs.HTTP: {20000, n}}, NoSync: true, Probe: nilProbe})
	w := holdWriter(t, o)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = o.Lease(fmt.Sprintf("a%d", i), onlyHTTP) })
	}
	accepted := eventually(10*time.Second, func() bool { return len(o.Leases()) == n })
	closed := make(chan error, 1)
	go func() { closed <- o.Close() }()
	w.release()
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !accepted {
		t.Fatalf("%d leases were not all accepted while a transaction was being written", n)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("leases accepted before Close: %v", err)
	}
	if _, err := o.Lease("late", onlyHTTP); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lease after Close: %v, want ErrClosed", err)
	}
	ls, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != n {
		t.Fatalf("file holds %d leases after Close, want %d: %v", len(ls), n, ls)
	}
}

// TestWriteFailureUndone: when a transaction fails (here the disk is
// full), its callers get the error and the in-memory state goes back to
// the file's; a call queued behind it that only found its port already
// held, in the failed transaction, fails too rather than hand out a port
// that is not on disk. Once there is room again the port is leased as
// usual.
func TestWriteFailureUndone(t *testing.T) {
	dir := smalldisk.Mount(t, "1m")
	path := filepath.Join(dir, "ports.db")
	o := MustOpenOffice(t, path, Options{Ranges: map[needs.Protocol]Range{needs.HTTP: {20000, 64}}, Probe: nilProbe})
	if _, err := o.Lease("before", onlyHTTP); err != nil {
		t.Fatal(err)
	}
	filler := smalldisk.Fill(t, dir)
	// A 32 KiB owner needs pages the full disk cannot give.
	big := "big-" + strings.Repeat("x", 32<<10)
	w := holdWriter(t, o)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { _, errs[0] = o.Lease(big, onlyHTTP) })
	// The committer has taken big's lease and waits for the writer.
	first := eventually(10*time.Second, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.writing && o.next == nil && len(o.leases) == 2
	})
	wg.Go(func() { _, errs[1] = o.Lease(big, onlyHTTP) })
	second := eventually(10*time.Second, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.next != nil
	})
	w.release()
	wg.Wait()
	if !first || !second {
		t.Fatalf("the two leases were not queued as expected (first %v, second %v)", first, second)
	}
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("lease %d on a full disk: %.200v, want an error saying so", i+1, err)
		}
	}
	if ls := o.Leases(); len(ls) != 1 || ls[0].Owner != "before" || ls[0].Port != 20000 {
		t.Fatalf("%d leases after the failed write, want only before's", len(ls))
	}
	if f := o.Free(needs.HTTP); f != 63 {
		t.Fatalf("Free = %d after the failed write, want 63", f)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got, err := o.Lease("after", onlyHTTP)
	if err != nil {
		t.Fatalf("lease once there is room again: %v", err)
	}
	if got[needs.HTTP] != 20001 {
		t.Fatalf("leased %d once there was room again, want 20001", got[needs.HTTP])
	}
	// MustOpenOffice's cleanup checks the file against these two leases.
}

// TestConcurrentCallsSameOwners runs leases and releases of a few owners
// from many goroutines at once, with the real bind check and two ports of
// the ranges held by another socket: however the calls interleave, no
// port is held twice, no owner holds two ports of a protocol, no lease is
// of a held port, no check mark stays behind, and the file matches (the
// cleanup checks that).
func TestConcurrentCallsSameOwners(t *testing.T) {
	const size, workers, steps, owners = 24, 8, 100, 12
	start := freeports.Block(t, 2*size)
	outsideHTTP, outsideTCP := start+2, start+size+4
	listen(t, outsideHTTP)
	listen(t, outsideTCP)
	o := MustOpenOffice(t, tempPath(t), Options{
		Ranges: map[needs.Protocol]Range{needs.HTTP: {start, size}, needs.TCP: {start + size, size}},
		Host:   "127.0.0.1",
		NoSync: true,
		Logger: slog.New(slog.DiscardHandler),
	})
	both := []needs.Protocol{needs.HTTP, needs.TCP}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range steps {
				owner := fmt.Sprintf("o%d", rng.IntN(owners))
				if rng.IntN(2) == 0 {
					if _, err := o.Release(owner); err != nil {
						errs[w] = err
						return
					}
					continue
				}
				got, err := o.Lease(owner, both)
				if err != nil {
					errs[w] = err
					return
				}
				if p := got[needs.HTTP]; p == outsideHTTP || p < start || p >= start+size {
					errs[w] = fmt.Errorf("leased http port %d", p)
					return
				}
				if p := got[needs.TCP]; p == outsideTCP || p < start+size || p >= start+2*size {
					errs[w] = fmt.Errorf("leased tcp port %d", p)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range o.Leases() {
		key := l.Owner + "/" + string(l.Proto)
		if seen[key] {
			t.Fatalf("%s holds two %s ports: %v", l.Owner, l.Proto, o.Leases())
		}
		seen[key] = true
	}
	o.mu.Lock()
	marks := o.probing.count(0, MaxPort)
	o.mu.Unlock()
	if marks != 0 {
		t.Fatalf("%d ports still marked as being checked after every call returned", marks)
	}
}

// writer is a write transaction a test holds, so that the committer
// waits for it.
type writer struct {
	tx   *bolt.Tx
	once sync.Once
}

func holdWriter(t *testing.T, o *Office) *writer {
	t.Helper()
	tx, err := o.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{tx: tx}
	t.Cleanup(w.release)
	return w
}

func (w *writer) release() { w.once.Do(func() { w.tx.Rollback() }) }

// txID returns the id of the last committed write transaction.
func txID(t *testing.T, o *Office) int {
	t.Helper()
	var id int
	if err := o.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// checkCommitted checks that the last committed transaction holds the lease
// of port to owner.
func checkCommitted(o *Office, proto needs.Protocol, port int, owner string) error {
	return o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(leasesBucket).Bucket([]byte(proto))
		var v []byte
		if b != nil {
			v = b.Get(binary.BigEndian.AppendUint16(nil, uint16(port)))
		}
		if v == nil {
			return fmt.Errorf("%s port %d handed to %s is not committed", proto, port, owner)
		}
		l, err := decodeLease(proto, portKey(port), v)
		if err != nil || l.Owner != owner {
			return fmt.Errorf("%s port %d handed to %s is committed as %v (%v)", proto, port, owner, l, err)
		}
		return nil
	})
}

// eventually polls cond every millisecond until it holds, for at most d.
// cond runs in a goroutine of its own, so one that blocks counts as false;
// it must return once the test has released what blocks it.
func eventually(d time.Duration, cond func() bool) bool {
	done := make(chan bool, 1)
	stop := make(chan struct{})
	go func() {
		for !cond() {
			select {
			case <-stop:
				done <- false
				return
			case <-time.After(time.Millisecond):
			}
		}
		done <- true
	}()
	select {
	case ok := <-done:
		return ok
	case <-time.After(d):
		close(stop)
		return false
	}
}
