package boltfile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkOpen measures what the checks cost on files of a few sizes:
// Open (meta pages, page walk, Tx.Check) against a bare bolt.Open.
//
//	go test -run '^$' -bench Open -benchtime 10x ./boltfile/
func BenchmarkOpen(b *testing.B) {
	for _, mib := range []int{1, 8, 32} {
		path := filepath.Join(b.TempDir(), "bench.db")
		fillDB(b, path, mib<<20)
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("checked/%dMiB", fi.Size()>>20), func(b *testing.B) {
			b.SetBytes(fi.Size())
			for b.Loop() {
				db, err := Open(path, 0o600, nil)
				if err != nil {
					b.Fatal(err)
				}
				db.Close()
			}
		})
		b.Run(fmt.Sprintf("bare/%dMiB", fi.Size()>>20), func(b *testing.B) {
			b.SetBytes(fi.Size())
			for b.Loop() {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					b.Fatal(err)
				}
				db.Close()
			}
		})
	}
}

// fillDB writes about size bytes of 200-byte values (the file ends up about
// three times larger), in buckets of 1,000
// keys, as the stores' JSON records are.
func fillDB(b *testing.B, path string, size int) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, 200)
	for n, i := 0, 0; n < size; i++ {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucket(fmt.Appendf(nil, "bucket-%d", i))
			if err != nil {
				return err
			}
			for k := range 1000 {
				if err := bk.Put(fmt.Appendf(nil, "key-%06d", k), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		n += 1000 * (len(val) + 20)
	}
}
