package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/boltfile"
)

// writeStateDB makes a real master.db holding n child records.
func writeStateDB(t *testing.T, path string, n int) []byte {
	t.Helper()
	s, err := openState(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &record{Alloc: fmt.Sprintf("alloc-%04d", i), Instance: fmt.Sprintf("svc.%d", i), PID: 1000 + i,
			Pipe: strings.Repeat("p", 80), Log: strings.Repeat("l", 80)}
		if err := s.put(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenStateDamaged: a master.db cut short, zeroed or full of garbage
// is refused with an error naming it, where bbolt crashed the master.
func TestOpenStateDamaged(t *testing.T) {
	orig := writeStateDB(t, filepath.Join(t.TempDir(), "master.db"), 200)
	cases := map[string][]byte{"zeroed": make([]byte, len(orig)), "text": []byte("not a database\n")}
	for _, size := range []int{100, 4096 + 100, 8192 + 100, len(orig) / 2} {
		cases[fmt.Sprintf("cut at %d", size)] = orig[:size]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := openState(path)
			if err == nil {
				s.close()
				t.Fatal("openState succeeded")
			}
			if !errors.Is(err, boltfile.ErrDamaged) || !strings.Contains(err.Error(), path+" is damaged") {
				t.Fatalf("openState: %v, want master.db named as damaged", err)
			}
		})
	}
}

// TestStateSchema: a new master.db gets schema "1"; one written before the
// key existed is given it and keeps its records; another version is
// refused with an error that names it.
func TestStateSchema(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.db")
	writeStateDB(t, fresh, 1)
	if v := readSchema(t, fresh); v != "1" {
		t.Fatalf("new master.db: schema %q, want \"1\"", v)
	}

	old := filepath.Join(dir, "old.db")
	rawUpdate(t, old, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketChildren)
		if err != nil {
			return err
		}
		return b.Put([]byte("a1"), []byte(`{"alloc":"a1","instance":"svc.1"}`))
	})
	s, err := openState(old)
	if err != nil {
		t.Fatalf("openState on a file without schema key: %v", err)
	}
	recs, err := s.all()
	s.close()
	if err != nil || len(recs) != 1 || recs[0].Instance != "svc.1" {
		t.Fatalf("records %v, %v; want svc.1", recs, err)
	}
	if v := readSchema(t, old); v != "1" {
		t.Fatalf("upgraded master.db: schema %q, want \"1\"", v)
	}

	future := filepath.Join(dir, "future.db")
	rawUpdate(t, future, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte("2"))
	})
	s, err = openState(future)
	if err == nil {
		s.close()
		t.Fatal("openState read schema 2")
	}
	if msg := err.Error(); !strings.Contains(msg, future) || !strings.Contains(msg, `schema version "2"`) {
		t.Fatalf("openState: %v, want the file and its version named", err)
	}
}

func rawUpdate(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Update(fn), db.Close()); err != nil {
		t.Fatal(err)
	}
}

func readSchema(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			v = string(b.Get(keySchema))
		}
		return nil
	})
	return v
}

// TestStateGroupCommit: concurrent writes to master.db share transactions,
// each returns once its own change is durable, and a write that fails
// fails alone.
func TestStateGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.db")
	s, err := openState(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			alloc := fmt.Sprintf("a%03d", i)
			if errs[i] = s.put(&record{Alloc: alloc, Instance: "x." + alloc}); errs[i] != nil {
				return
			}
			if errs[i] = s.setReady(alloc); errs[i] != nil {
				return
			}
			if i%2 == 0 {
				errs[i] = s.delete(alloc)
			}
		})
	}
	bad := errors.New("bad op")
	var badErr error
	wg.Go(func() { badErr = s.update(func(*bolt.Tx) error { return bad }) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if !errors.Is(badErr, bad) {
		t.Errorf("failing op: %v, want %v", badErr, bad)
	}
	recs, err := s.all()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n/2 {
		t.Fatalf("%d records, want %d", len(recs), n/2)
	}
	for _, r := range recs {
		if !r.Ready {
			t.Errorf("%s not ready", r.Alloc)
		}
	}
}
