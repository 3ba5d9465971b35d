package boltfile

import (
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzCheck feeds Check's decoder random files, whole and cut at a random
// point, seeded with real bbolt files. It must never panic, and a file it
// passes must open and pass Tx.Check without crashing the process.
func FuzzCheck(f *testing.F) {
	for _, n := range []int{0, 3, 300} {
		path := filepath.Join(f.TempDir(), "seed.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024})
		if err != nil {
			f.Fatal(err)
		}
		db.Close()
		if n > 0 {
			makeDB(f, path, n)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(len(b)))
		f.Add(b, uint32(len(b)/2))
	}
	f.Add([]byte("not bbolt"), uint32(4))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, cut uint32) {
		if int(cut) < len(data) {
			data = data[:cut]
		}
		if len(data) == 0 {
			return
		}
		if _, err := checkReader(bytesReader(data), int64(len(data))); err != nil {
			return
		}
		path := filepath.Join(dir, "fuzz.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := Open(path, 0o600, &bolt.Options{Timeout: 1e9})
		if err == nil {
			db.Close()
		}
	})
}
