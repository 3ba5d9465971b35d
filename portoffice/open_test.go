package portoffice

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/boltfile"
	"berth/needs"
)

func TestReopen(t *testing.T) {
	path := tempPath(t)
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 10}, needs.HTTP: {17000, 10}}, Probe: nilProbe}
	o := MustOpenOffice(t, path, opts)
	a := mustLease(t, o, "a", tcpHTTP...)
	b := mustLease(t, o, "b", tcpHTTP...)
	before := o.Leases()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := o.Lease("c", onlyTCP); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lease after Close: %v, want ErrClosed", err)
	}

	o = MustOpenOffice(t, path, opts)
	assertLeases(t, o.Leases(), before)
	if got := o.Owned("a"); !maps.Equal(got, a) {
		t.Fatalf("Owned(a) = %v, want %v", got, a)
	}
	if got := mustLease(t, o, "b", tcpHTTP...); !maps.Equal(got, b) {
		t.Fatalf("lease again for b = %v, want %v", got, b)
	}
	if got := mustLease(t, o, "c", tcpHTTP...); got[needs.TCP] != 16002 || got[needs.HTTP] != 17002 {
		t.Fatalf("lease for c = %v, want tcp 16002 http 17002", got)
	}
	gone, err := o.Reclaim(func(owner string) bool { return owner != "a" })
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 2 || gone[0].Owner != "a" || gone[0].Port != a[needs.TCP] || gone[1].Port != a[needs.HTTP] {
		t.Fatalf("Reclaim = %v, want a's two leases", gone)
	}
	if o.Owned("a") != nil {
		t.Fatalf("a still owns %v", o.Owned("a"))
	}
	o.Close()

	o = MustOpenOffice(t, path, opts)
	if got := len(o.Leases()); got != 4 {
		t.Fatalf("after reclaim and reopen: %d leases, want 4", got)
	}
}

func TestOpenLocked(t *testing.T) {
	path := tempPath(t)
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 10}}, Probe: nilProbe}
	MustOpenOffice(t, path, opts)
	opts.Timeout = 50 * time.Millisecond
	start := time.Now()
	o, err := Open(path, opts)
	if err == nil {
		o.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) || !errors.Is(err, bolt.ErrTimeout) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %s", d)
	}
}

func TestOpenSchema(t *testing.T) {
	path := tempPath(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		return b.Put(schemaKey, []byte("2"))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 10}}, Probe: nilProbe})
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), `"2"`) {
		t.Fatalf("Open: %v, want ErrSchema naming version 2", err)
	}
}

// TestRangeChange reopens with ranges that no longer hold the leased ports.
func TestRangeChange(t *testing.T) {
	path := tempPath(t)
	o := MustOpenOffice(t, path, Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}, needs.WS: {18000, 5}}, Probe: nilProbe})
	mustLease(t, o, "a", needs.TCP, needs.WS)
	o.Close()
	// tcp now starts where the old lease is; ws is gone altogether.
	o = MustOpenOffice(t, path, Options{Ranges: map[needs.Protocol]Range{needs.HTTP: {15999, 3}}, Probe: nilProbe})
	if got := o.Owned("a"); got[needs.TCP] != 16000 || got[needs.WS] != 18000 {
		t.Fatalf("Owned(a) = %v", got)
	}
	if n := o.Free(needs.HTTP); n != 2 {
		t.Fatalf("Free(http) = %d, want 2", n)
	}
	if got := mustLease(t, o, "b", needs.HTTP, needs.HTTP); got[needs.HTTP] != 15999 {
		t.Fatalf("Lease(b) = %v", got)
	}
	if got := mustLease(t, o, "c", needs.HTTP); got[needs.HTTP] != 16001 {
		t.Fatalf("Lease(c) = %v, want 16001 (16000 is still a's)", got)
	}
	if ports, err := o.Release("a"); err != nil || !slices.Equal(ports, []int{16000, 18000}) {
		t.Fatalf("Release(a) = %v, %v", ports, err)
	}
}

func TestOpenBadHost(t *testing.T) {
	path := tempPath(t)
	_, err := Open(path, Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}}, Host: "192.0.2.1"})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1") {
		t.Fatalf("Open with a foreign host: %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("file created")
	}
}

// TestOpenDamaged: a ports.db cut short, zeroed or full of garbage is
// refused with an error that names it and says what to do; bbolt alone
// crashed on such files.
func TestOpenDamaged(t *testing.T) {
	path := tempPath(t)
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 100}}, Probe: nilProbe}
	o := MustOpenOffice(t, path, opts)
	for i := range 50 {
		mustLease(t, o, fmt.Sprintf("owner-%d", i), needs.TCP)
	}
	o.Close()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, len(orig))
	for i := range garbage {
		garbage[i] = byte(i*31 + i/7)
	}
	cases := map[string][]byte{
		"garbage":    garbage,
		"meta pages": append(make([]byte, 8192), orig[8192:]...),
	}
	for _, size := range []int{100, 4096 + 100, 8192 + 100, len(orig) / 2} {
		cases[fmt.Sprintf("cut at %d", size)] = orig[:size]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ports.db")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			o, err := Open(p, opts)
			if err == nil {
				o.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, boltfile.ErrDamaged) || errors.Is(err, ErrLocked) ||
				!strings.Contains(err.Error(), p+" is damaged") || !strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("Open: %v, want ports.db named as damaged", err)
			}
		})
	}
}
