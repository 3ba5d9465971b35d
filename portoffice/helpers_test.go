package portoffice

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/needs"
)

// nilProbe says every port binds, so leases are deterministic.
func nilProbe(string, int) error { return nil }

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// tempPath returns a fresh office file path in tb's temp dir.
func tempPath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "ports.db") }

// MustOpenOffice opens an office at path and, at cleanup, closes it and
// checks the file against its last Leases.
func MustOpenOffice(tb testing.TB, path string, opts Options) *Office {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(tb)
	}
	o, err := Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { checkConsistent(tb, o, path) })
	return o
}

// checkConsistent closes o and reads path back. If o was still open, the
// file must hold exactly o's leases and quarantine entries; in any case it
// must carry the schema key and hold no port twice.
func checkConsistent(tb testing.TB, o *Office, path string) {
	o.mu.Lock()
	wasOpen := !o.closed
	wantQ := slices.SortedFunc(maps.Values(o.quarantine), compareQuarantine)
	o.mu.Unlock()
	want := o.Leases()
	if err := o.Close(); err != nil {
		tb.Errorf("consistency check: close: %v", err)
	}
	got, err := readFile(path)
	if err != nil {
		tb.Errorf("consistency check: %v", err)
		return
	}
	gotQ, err := readQuarantine(path)
	if err != nil {
		tb.Errorf("consistency check: %v", err)
		return
	}
	if wasOpen {
		assertLeases(tb, got, want)
		if !sameQuarantine(gotQ, wantQ) {
			tb.Errorf("consistency check: quarantine in file:\n got  %v\n want %v", gotQ, wantQ)
		}
	}
}

// readQuarantine reads every quarantine entry of the office file at path.
func readQuarantine(path string) ([]Quarantine, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var qs []Quarantine
	err = db.View(func(tx *bolt.Tx) error {
		qb := tx.Bucket(quarantineBucket)
		if qb == nil {
			return fmt.Errorf("no quarantine bucket")
		}
		return qb.ForEach(func(k, v []byte) error {
			q, err := decodeQuarantine(k, v)
			qs = append(qs, q)
			return err
		})
	})
	slices.SortFunc(qs, compareQuarantine)
	return qs, err
}

func compareQuarantine(a, b Quarantine) int {
	if c := compareProto(a.Proto, b.Proto); c != 0 {
		return c
	}
	return a.Port - b.Port
}

// sameQuarantine compares entries, times by the instant they name.
func sameQuarantine(got, want []Quarantine) bool {
	return slices.EqualFunc(got, want, func(a, b Quarantine) bool {
		return a.Proto == b.Proto && a.Port == b.Port && a.Since.Equal(b.Since) && a.Until.Equal(b.Until) && a.Reason == b.Reason
	})
}

// readFile reads every lease of the office file at path, read-only, and
// checks the schema key and that no port is held twice.
func readFile(path string) ([]Lease, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var ls []Lease
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil || string(meta.Get(schemaKey)) != SchemaVersion {
			return fmt.Errorf("schema key missing or wrong")
		}
		lb := tx.Bucket(leasesBucket)
		if lb == nil {
			return fmt.Errorf("no leases bucket")
		}
		seen := map[int]bool{}
		return lb.ForEachBucket(func(name []byte) error {
			return lb.Bucket(name).ForEach(func(k, v []byte) error {
				l, err := decodeLease(needs.Protocol(name), k, v)
				if err != nil {
					return err
				}
				if seen[l.Port] {
					return fmt.Errorf("port %d held twice", l.Port)
				}
				seen[l.Port] = true
				ls = append(ls, l)
				return nil
			})
		})
	})
	slices.SortFunc(ls, compareLeases)
	return ls, err
}

func assertLeases(tb testing.TB, got, want []Lease) {
	tb.Helper()
	eq := slices.EqualFunc(got, want, func(a, b Lease) bool {
		return a.Proto == b.Proto && a.Port == b.Port && a.Owner == b.Owner && a.Since.Equal(b.Since)
	})
	if !eq {
		tb.Fatalf("leases:\n got  %v\n want %v", got, want)
	}
}

// listen holds port on 127.0.0.1 until the test ends.
func listen(tb testing.TB, port int) {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
}
