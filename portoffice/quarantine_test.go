package portoffice

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/internal/freeports"
	"berth/needs"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// outside plays the processes berth does not know: a port in it fails the
// probe with EADDRINUSE. It counts the probes.
type outside struct {
	mu     sync.Mutex
	held   map[int]bool
	probes int
}

func newOutside() *outside { return &outside{held: map[int]bool{}} }

func (x *outside) probe(host string, port int) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.probes++
	if x.held[port] {
		return fmt.Errorf("listen tcp %s:%d: bind: %w", host, port, syscall.EADDRINUSE)
	}
	return nil
}

func (x *outside) set(port int, held bool) {
	x.mu.Lock()
	x.held[port] = held
	x.mu.Unlock()
}

func (x *outside) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.probes
}

// TestQuarantineRelease uses real sockets: a port whose child is gone but
// that another process (the test) holds is quarantined by Release, logged,
// skipped by Lease until the quarantine ends, and leased again after it.
func TestQuarantineRelease(t *testing.T) {
	r := Range{Start: freeports.Block(t, 2), Size: 2}
	clock := newFakeClock()
	var logs bytes.Buffer
	o := MustOpenOffice(t, tempPath(t), Options{
		Ranges: map[needs.Protocol]Range{needs.HTTP: r}, Host: "127.0.0.1",
		Quarantine: 30 * time.Second, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	port := mustLease(t, o, "a", needs.HTTP)[needs.HTTP]
	if port != r.Start {
		t.Fatalf("lease = %d, want %d", port, r.Start)
	}
	// An outside process binds the leased port before the child does; the
	// child fails and its master releases the port.
	ln := listenOn(t, port)
	if ports, err := o.Release("a"); err != nil || len(ports) != 1 || ports[0] != port {
		t.Fatalf("Release = %v, %v", ports, err)
	}
	qs := o.Quarantined()
	if len(qs) != 1 || qs[0].Port != port || qs[0].Proto != needs.HTTP ||
		!qs[0].Until.Equal(clock.Now().Add(30*time.Second)) || !strings.Contains(qs[0].Reason, "address already in use") {
		t.Fatalf("Quarantined = %+v, want http %d until now+30s for address in use", qs, port)
	}
	for _, want := range []string{"port quarantined", fmt.Sprintf("port=%d", port), "proto=http", "until=2026-01-02T15:04:35Z"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if got := mustLease(t, o, "b", needs.HTTP)[needs.HTTP]; got != r.Start+1 {
		t.Fatalf("lease after quarantine = %d, want %d", got, r.Start+1)
	}
	// The outsider lets go, but the port stays out until its time is up.
	ln.Close()
	_, err := o.Lease("c", []needs.Protocol{needs.HTTP})
	var ee *ExhaustedError
	if !errors.As(err, &ee) || ee.Quarantined != 1 || !ee.Until.Equal(qs[0].Until) {
		t.Fatalf("lease during quarantine: %v, want exhausted with 1 in quarantine", err)
	}
	clock.Add(30 * time.Second)
	if got := mustLease(t, o, "c", needs.HTTP)[needs.HTTP]; got != port {
		t.Fatalf("lease after quarantine = %d, want %d again", got, port)
	}
	if qs := o.Quarantined(); len(qs) != 0 {
		t.Fatalf("Quarantined after expiry = %+v", qs)
	}
}

// TestQuarantineReleaseFreePort: a port nobody holds after release is not
// quarantined.
func TestQuarantineReleaseFreePort(t *testing.T) {
	r := Range{Start: freeports.Block(t, 2), Size: 2}
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.HTTP: r}, Host: "127.0.0.1"})
	mustLease(t, o, "a", needs.HTTP)
	if _, err := o.Release("a"); err != nil {
		t.Fatal(err)
	}
	if qs := o.Quarantined(); len(qs) != 0 {
		t.Fatalf("Quarantined = %+v, want none", qs)
	}
	if got := mustLease(t, o, "b", needs.HTTP)[needs.HTTP]; got != r.Start {
		t.Fatalf("lease = %d, want %d", got, r.Start)
	}
}

// TestQuarantineNoBusyLoop: once every free port is in quarantine, Lease
// fails at once without probing any of them, and bids see no free port.
func TestQuarantineNoBusyLoop(t *testing.T) {
	x := newOutside()
	clock := newFakeClock()
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 10}},
		Probe: x.probe, Now: clock.Now})
	for p := 16000; p < 16010; p++ {
		x.set(p, true)
	}
	if _, err := o.Lease("a", onlyTCP); !errors.Is(err, ErrExhausted) {
		t.Fatalf("first lease: %v, want ErrExhausted", err)
	}
	if n := x.count(); n != 10 {
		t.Fatalf("first lease probed %d ports, want 10", n)
	}
	if n := len(o.Quarantined()); n != 10 {
		t.Fatalf("%d ports in quarantine, want 10", n)
	}
	if n := o.Free(needs.TCP); n != 0 {
		t.Fatalf("Free = %d, want 0", n)
	}
	for range 100 {
		_, err := o.Lease("a", onlyTCP)
		var ee *ExhaustedError
		if !errors.As(err, &ee) || ee.Quarantined != 10 || ee.Unbindable != 0 {
			t.Fatalf("lease: %v, want exhausted with 10 in quarantine", err)
		}
	}
	if n := x.count(); n != 10 {
		t.Fatalf("100 more leases probed %d more ports, want 0", n-10)
	}
	// One port comes back: after the quarantine it is probed and leased.
	x.set(16007, false)
	clock.Add(DefaultQuarantine)
	if got := mustLease(t, o, "a", needs.TCP)[needs.TCP]; got != 16007 {
		t.Fatalf("lease after quarantine = %d, want 16007", got)
	}
	// The ports below 16007 were probed again and are back in quarantine;
	// those above were not reached, so their ended quarantine is gone.
	if qs := o.Quarantined(); len(qs) != 7 || qs[0].Port != 16000 || qs[6].Port != 16006 {
		t.Fatalf("Quarantined = %+v, want 16000-16006", qs)
	}
}

// TestQuarantineExplicit is the socket activation path: the caller found a
// leased port taken and says so; Release does not probe it again, and
// Lease skips it.
func TestQuarantineExplicit(t *testing.T) {
	x := newOutside()
	clock := newFakeClock()
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 3}, needs.HTTP: {17000, 3}},
		Probe: x.probe, Now: clock.Now, Quarantine: time.Minute})
	got := mustLease(t, o, "a", tcpHTTP...)
	q, err := o.Quarantine(needs.HTTP, got[needs.HTTP], "bind: address already in use")
	if err != nil {
		t.Fatal(err)
	}
	if q.Port != 17000 || !q.Until.Equal(clock.Now().Add(time.Minute)) || q.Reason != "bind: address already in use" {
		t.Fatalf("Quarantine = %+v", q)
	}
	if n := o.Free(needs.HTTP); n != 2 {
		t.Fatalf("Free(http) = %d, want 2 (the quarantined port is still leased)", n)
	}
	before := x.count()
	if _, err := o.Release("a"); err != nil {
		t.Fatal(err)
	}
	if n := x.count() - before; n != 1 {
		t.Fatalf("Release probed %d ports, want 1 (not the one in quarantine)", n)
	}
	if n := o.Free(needs.HTTP); n != 2 {
		t.Fatalf("Free(http) = %d after release, want 2", n)
	}
	if got := mustLease(t, o, "b", tcpHTTP...); got[needs.HTTP] != 17001 || got[needs.TCP] != 16000 {
		t.Fatalf("lease = %v, want http 17001 tcp 16000", got)
	}
	clock.Add(30 * time.Second)
	if _, err := o.Quarantine(needs.HTTP, 17000, "again"); err != nil {
		t.Fatal(err)
	}
	clock.Add(45 * time.Second) // 75 s after the first, 45 s after the second
	if qs := o.Quarantined(); len(qs) != 1 || qs[0].Reason != "again" {
		t.Fatalf("Quarantined = %+v, want the renewed entry", qs)
	}

	for _, bad := range []struct {
		proto needs.Protocol
		port  int
		field string
	}{{needs.HTTP, 0, "port"}, {needs.HTTP, 65536, "port"}, {"udp", 17000, "proto"}} {
		_, err := o.Quarantine(bad.proto, bad.port, "x")
		var fe *needs.FieldError
		if !errors.As(err, &fe) || fe.Field != bad.field {
			t.Errorf("Quarantine(%s, %d): %v, want a FieldError for %s", bad.proto, bad.port, err, bad.field)
		}
	}
	o.Close()
	if _, err := o.Quarantine(needs.HTTP, 17002, "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Quarantine after Close: %v", err)
	}
}

// TestQuarantineReopen: entries survive a restart; expired ones are
// dropped from the file at Open; an Until pushed far out by a clock that
// went back is brought down to one period from now.
func TestQuarantineReopen(t *testing.T) {
	path := tempPath(t)
	x := newOutside()
	clock := newFakeClock()
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}}, Probe: x.probe, Now: clock.Now, Quarantine: time.Minute}
	o := MustOpenOffice(t, path, opts)
	for _, port := range []int{16001, 16002} {
		if _, err := o.Quarantine(needs.TCP, port, "test"); err != nil {
			t.Fatal(err)
		}
		clock.Add(40 * time.Second)
	}
	want := o.Quarantined()
	if len(want) != 1 || want[0].Port != 16002 {
		t.Fatalf("Quarantined = %+v, want only 16002 (16001 expired)", want)
	}
	o.Close()

	o = MustOpenOffice(t, path, opts)
	if got := o.Quarantined(); !sameQuarantine(got, want) {
		t.Fatalf("after reopen: %+v, want %+v", got, want)
	}
	o.Close()
	if qs, err := readQuarantine(path); err != nil || len(qs) != 1 {
		t.Fatalf("file holds %+v, %v; want the expired entry gone", qs, err)
	}

	clock.Add(-time.Hour) // the clock went back an hour
	o = MustOpenOffice(t, path, opts)
	got := o.Quarantined()
	if len(got) != 1 || !got[0].Until.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("after the clock went back: %+v, want until now+1m", got)
	}
	if got := mustLease(t, o, "a", needs.TCP)[needs.TCP]; got != 16000 {
		t.Fatalf("lease = %d", got)
	}
	if got := mustLease(t, o, "b", needs.TCP)[needs.TCP]; got != 16001 {
		t.Fatalf("lease = %d, want 16001 (its quarantine ended)", got)
	}
	if got := mustLease(t, o, "c", needs.TCP)[needs.TCP]; got != 16003 {
		t.Fatalf("lease = %d, want 16003 (16002 is in quarantine)", got)
	}
}

// TestQuarantineReclaim: Reclaim probes the ports it frees like Release.
func TestQuarantineReclaim(t *testing.T) {
	x := newOutside()
	o := MustOpenOffice(t, tempPath(t), Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}}, Probe: x.probe})
	mustLease(t, o, "a", needs.TCP)
	mustLease(t, o, "b", needs.TCP)
	x.set(16001, true)
	if ls, err := o.Reclaim(func(string) bool { return false }); err != nil || len(ls) != 2 {
		t.Fatalf("Reclaim = %v, %v", ls, err)
	}
	if qs := o.Quarantined(); len(qs) != 1 || qs[0].Port != 16001 {
		t.Fatalf("Quarantined = %+v, want 16001", qs)
	}
}

// TestOpenCorruptQuarantine: a bad entry is refused with its key named.
func TestOpenCorruptQuarantine(t *testing.T) {
	path := tempPath(t)
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}}, Probe: nilProbe, Logger: testLogger(t)}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(quarantineBucket).Put(portKey(16001), []byte(`{"proto":"tcp"}`))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, opts)
	if err == nil || !strings.Contains(err.Error(), "quarantine/3e81") || !strings.Contains(err.Error(), "no until") {
		t.Fatalf("Open: %v, want an error naming quarantine/3e81", err)
	}
}

// TestOpenWithoutQuarantineBucket: a file written before quarantine
// existed opens and gets the bucket.
func TestOpenWithoutQuarantineBucket(t *testing.T) {
	path := tempPath(t)
	opts := Options{Ranges: map[needs.Protocol]Range{needs.TCP: {16000, 5}}, Probe: nilProbe}
	o := MustOpenOffice(t, path, opts)
	mustLease(t, o, "a", needs.TCP)
	o.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(quarantineBucket) })
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	o = MustOpenOffice(t, path, opts)
	if got := o.Owned("a"); got[needs.TCP] != 16000 {
		t.Fatalf("Owned(a) = %v", got)
	}
	if _, err := o.Quarantine(needs.TCP, 16003, "x"); err != nil {
		t.Fatal(err)
	}
}

// listenOn holds port on 127.0.0.1 until the test ends or the returned
// listener is closed; it plays a process berth does not know.
func listenOn(tb testing.TB, port int) net.Listener {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}
