package boltfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

func TestOpenWhole(t *testing.T) {
	path, _ := tempDB(t, 2000)
	if err := Check(path); err != nil {
		t.Fatalf("Check: %v", err)
	}
	db, err := openDB(t, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("big")).Get([]byte("key-001999")); string(v) != "value 1999" {
			return fmt.Errorf("key-001999 = %q", v)
		}
		if v := tx.Bucket([]byte("inline")).Get([]byte("k")); string(v) != "v" {
			return fmt.Errorf("inline k = %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenMissingOrEmpty(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{missing, empty} {
		db, err := openDB(t, path)
		if err != nil {
			t.Fatalf("Open %s: %v", path, err)
		}
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenTruncated is the repro of `truncate -s 20000 lan.db`, at several
// sizes: bolt.Open dies with SIGSEGV or SIGBUS on such files. A file cut
// above its high-water mark (bbolt grows files ahead of use) is whole.
func TestOpenTruncated(t *testing.T) {
	path, ps := tempDB(t, 2000)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := checkMeta(bytesReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	hwm := int64(m.pgid) * int64(ps)
	if hwm <= 20000 || hwm > int64(len(orig)) {
		t.Fatalf("test file: high-water mark at %d bytes, file %d bytes", hwm, len(orig))
	}
	for _, size := range []int64{1, 100, int64(ps) - 1, int64(ps), int64(ps) + 100, 2 * int64(ps), 3*int64(ps) + 7, 20000, hwm / 2, hwm - int64(ps), hwm - 1, hwm, int64(len(orig))} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "lan.db")
			if err := os.WriteFile(p, orig[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := openDB(t, p)
			if size >= hwm {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if err := db.View(func(tx *bolt.Tx) error {
					if v := tx.Bucket([]byte("big")).Get([]byte("key-001999")); string(v) != "value 1999" {
						return fmt.Errorf("key-001999 = %q", v)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantDamaged(t, err, p)
			if size >= int64(ps)+pageHeaderSize+metaSize {
				wantDamaged(t, err, p, fmt.Sprintf("file is %d bytes, its meta page says %d", size, hwm))
			}
			if after, _ := os.ReadFile(p); len(after) != int(size) {
				t.Errorf("the damaged file changed: %d bytes, was %d", len(after), size)
			}
		})
	}
}

func TestOpenGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{10, 4096, 64 << 10} {
		p := filepath.Join(t.TempDir(), "garbage.db")
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := openDB(t, p)
		wantDamaged(t, err, p)
	}
	// Text, a directory: not bbolt files either.
	p := filepath.Join(t.TempDir(), "text.db")
	if err := os.WriteFile(p, []byte("{\"needs\": []}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openDB(t, p)
	wantDamaged(t, err, p, "no valid meta page")
	d := filepath.Join(t.TempDir(), "dir.db")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = Open(d, 0o600, &bolt.Options{Timeout: 200e6})
	wantDamaged(t, err, d, "not a regular file")
}

// TestOpenMetaPages zeroes one meta page, then both. One is enough for
// bbolt, which falls back on the other; with none the file is damaged.
func TestOpenMetaPages(t *testing.T) {
	path, ps := tempDB(t, 100)
	zero := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { clear(b[off : off+ps]); return b }
	}
	for _, c := range []struct {
		name  string
		edits []func([]byte) []byte
		ok    bool
	}{
		{"first", []func([]byte) []byte{zero(0)}, true},
		{"second", []func([]byte) []byte{zero(ps)}, true},
		{"both", []func([]byte) []byte{zero(0), zero(ps)}, false},
		{"checksum of both", []func([]byte) []byte{
			func(b []byte) []byte {
				b[pageHeaderSize+checksumOffset]++
				b[ps+pageHeaderSize+checksumOffset]++
				return b
			},
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ports.db")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.edits {
				b = e(b)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := openDB(t, p)
			if c.ok {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				// bbolt reads the other meta page: the last commit or the
				// one before it, and writes on.
				if err := db.Update(func(tx *bolt.Tx) error {
					_, err := tx.CreateBucketIfNotExists([]byte("after"))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantDamaged(t, err, p, "no valid meta page")
		})
	}
}

// TestOpenDamagedPages damages pages inside a file of the right size: what
// bbolt follows without checking.
func TestOpenDamagedPages(t *testing.T) {
	path, ps := tempDB(t, 2000)
	for _, c := range []struct {
		name string
		edit func(t *testing.T, b []byte)
		want string
	}{
		{"root page garbage", func(t *testing.T, b []byte) {
			r := rootPage(t, b)
			for i := range ps {
				b[int(r)*ps+i] = byte(i*7 + 3)
			}
		}, "root bucket"},
		{"root page points to itself", func(t *testing.T, b []byte) {
			r := rootPage(t, b)
			p := b[int(r)*ps:]
			ne.PutUint16(p[8:], branchPageFlag)
			ne.PutUint16(p[10:], 1)
			ne.PutUint32(p[pageHeaderSize:], elementSize)
			ne.PutUint32(p[pageHeaderSize+4:], 1)
			ne.PutUint64(p[pageHeaderSize+8:], r)
		}, "used twice"},
		{"element outside its page", func(t *testing.T, b []byte) {
			r := rootPage(t, b)
			ne.PutUint32(b[int(r)*ps+pageHeaderSize+4:], uint32(ps)) // pos of the first leaf element
		}, "outside the page"},
		{"page past the high-water mark", func(t *testing.T, b []byte) {
			r := rootPage(t, b)
			ne.PutUint32(b[int(r)*ps+12:], 1<<20) // overflow
		}, "past the high-water mark"},
		{"freelist lists too many", func(t *testing.T, b []byte) {
			m, _, _ := checkMeta(bytesReader(b), int64(len(b)))
			ne.PutUint16(b[int(m.freelist)*ps+10:], 0xFFFF)
			ne.PutUint64(b[int(m.freelist)*ps+pageHeaderSize:], 1<<40)
		}, "freelist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "master.db")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c.edit(t, b)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = openDB(t, p)
			wantDamaged(t, err, p, c.want)
		})
	}
}

// TestOpenLockedElsewhere: a file another process holds is reported as
// bbolt reports it, after the timeout, and never as damaged, even while
// it looks damaged.
func TestOpenLockedElsewhere(t *testing.T) {
	path, _ := tempDB(t, 100)
	if err := os.Truncate(path, 20000); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := tryLock(f, true); !ok || err != nil {
		t.Fatalf("lock: %v %v", ok, err)
	}
	_, err = Open(path, 0o600, &bolt.Options{Timeout: 100e6})
	if !errors.Is(err, berrors.ErrTimeout) || errors.Is(err, ErrDamaged) {
		t.Fatalf("Open of a locked file: %v, want bbolt's ErrTimeout", err)
	}
	unlock(f)
	_, err = openDB(t, path)
	wantDamaged(t, err, path, "file is 20000 bytes")
}
