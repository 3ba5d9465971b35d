package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// makeDB writes a real bbolt file at path: n keys in bucket "big" (enough
// for branch pages), a nested bucket, an inline bucket and a value that
// needs overflow pages. It returns the file's page size.
func makeDB(tb testing.TB, path string, n int) int {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ps := db.Info().PageSize
	err = db.Update(func(tx *bolt.Tx) error {
		big, err := tx.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		for i := range n {
			if err := big.Put(fmt.Appendf(nil, "key-%06d", i), fmt.Appendf(nil, "value %d", i)); err != nil {
				return err
			}
		}
		nested, err := big.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		if err := nested.Put([]byte("large"), make([]byte, 3*ps)); err != nil {
			return err
		}
		inline, err := tx.CreateBucket([]byte("inline"))
		if err != nil {
			return err
		}
		return inline.Put([]byte("k"), []byte("v"))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		tb.Fatal(err)
	}
	return ps
}

// tempDB makes a database in tb's temp dir and returns its path and page
// size.
func tempDB(tb testing.TB, n int) (string, int) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "test.db")
	return path, makeDB(tb, path, n)
}

// wantDamaged fails tb unless err is a DamagedError naming path and
// containing every one of want.
func wantDamaged(tb testing.TB, err error, path string, want ...string) {
	tb.Helper()
	var de *DamagedError
	if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
		tb.Fatalf("got %v, want a DamagedError", err)
	}
	msg := err.Error()
	for _, w := range append([]string{path + " is damaged", "restore it from a backup"}, want...) {
		if !strings.Contains(msg, w) {
			tb.Errorf("error %q does not say %q", msg, w)
		}
	}
}

// openDB opens path with Open and a short lock timeout, closing it at
// cleanup.
func openDB(tb testing.TB, path string) (*bolt.DB, error) {
	tb.Helper()
	db, err := Open(path, 0o600, &bolt.Options{Timeout: 200e6})
	if err == nil {
		tb.Cleanup(func() { db.Close() })
	}
	return db, err
}

// editFile applies fn to the bytes of the file at path.
func editFile(tb testing.TB, path string, fn func([]byte) []byte) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// rootPage returns the root page id of the file's current meta page.
func rootPage(tb testing.TB, data []byte) uint64 {
	tb.Helper()
	m, _, err := checkMeta(bytesReader(data), int64(len(data)))
	if err != nil {
		tb.Fatal(err)
	}
	return m.root
}

type bytesReader []byte

func (b bytesReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(b)) {
		return 0, errors.New("offset out of range")
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, errors.New("EOF")
	}
	return n, nil
}

var ne = binary.NativeEndian
