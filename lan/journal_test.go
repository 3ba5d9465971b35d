package lan_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/internal/smalldisk"
	"berth/lan"
	"berth/needs"
)

// storeModel is what a store must load: the last value written of each
// record.
type storeModel struct {
	needs     map[string]int // name → Instances
	instances map[string]int // name → Restarts
	drained   map[string]time.Time
}

func newStoreModel() *storeModel {
	return &storeModel{needs: map[string]int{}, instances: map[string]int{}, drained: map[string]time.Time{}}
}

// randomChange returns a change of a few puts and deletions over a small
// set of names (so that they overwrite each other), and applies it to m.
func (m *storeModel) randomChange(r *rand.Rand) *lan.Change {
	c := &lan.Change{}
	for range 1 + r.IntN(6) {
		switch r.IntN(6) {
		case 0:
			name := fmt.Sprintf("need-%d", r.IntN(20))
			v := r.IntN(1000)
			c.PutNeeds = append(c.PutNeeds, &needs.Need{Name: name, Instances: v, Command: []string{"x"}})
			m.needs[name] = v
		case 1:
			name := fmt.Sprintf("need-%d", r.IntN(20))
			c.DeleteNeeds = append(c.DeleteNeeds, name)
			delete(m.needs, name)
		case 2, 3:
			name := fmt.Sprintf("web.%d", r.IntN(200))
			v := r.IntN(1000)
			c.PutInstances = append(c.PutInstances, &needs.Instance{Need: "web", Name: name, Restarts: v})
			m.instances[name] = v
		case 4:
			name := fmt.Sprintf("web.%d", r.IntN(200))
			c.DeleteInstances = append(c.DeleteInstances, name)
			delete(m.instances, name)
		case 5:
			name := fmt.Sprintf("m%d", r.IntN(5))
			if r.IntN(2) == 0 {
				at := time.Unix(int64(r.IntN(1e9)), 0).UTC()
				if c.PutDrained == nil {
					c.PutDrained = map[string]time.Time{}
				}
				c.PutDrained[name] = at
				c.DeleteDrained = slices.DeleteFunc(c.DeleteDrained, func(s string) bool { return s == name })
				m.drained[name] = at
			} else {
				c.DeleteDrained = append(c.DeleteDrained, name)
				delete(c.PutDrained, name)
				delete(m.drained, name)
			}
		}
	}
	// Puts come before deletions in a change: a name both put and deleted
	// ends deleted.
	for _, n := range c.DeleteNeeds {
		delete(m.needs, n)
	}
	for _, n := range c.DeleteInstances {
		delete(m.instances, n)
	}
	return c
}

// check fails t unless st loads exactly m.
func (m *storeModel) check(t *testing.T, st *lan.Store, when string) {
	t.Helper()
	ns, is, err := st.Load()
	if err != nil {
		t.Fatalf("%s: Load: %v", when, err)
	}
	dr, err := st.LoadDrained()
	if err != nil {
		t.Fatalf("%s: LoadDrained: %v", when, err)
	}
	got := newStoreModel()
	for name, n := range ns {
		got.needs[name] = n.Instances
	}
	for name, in := range is {
		got.instances[name] = in.Restarts
	}
	for name, at := range dr {
		got.drained[name] = at.UTC()
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("%s: the store loads\n%+v\nwant\n%+v", when, got, m)
	}
}

func openStore(t *testing.T, dir string) *lan.Store {
	t.Helper()
	st, err := lan.OpenStore(filepath.Join(dir, "lan.db"))
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return st
}

// segments returns the journal segment files in dir.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "lan.journal.*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJournalRoundTrip: random changes, checkpoints and reopenings; the
// store always loads the last value written of each record, and an
// opened store has exactly one segment, its active one.
func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	m := newStoreModel()
	st := openStore(t, dir)
	for i := range 600 {
		if err := st.Apply(m.randomChange(r)); err != nil {
			t.Fatal(err)
		}
		switch r.IntN(40) {
		case 0:
			if err := st.Checkpoint(); err != nil {
				t.Fatalf("Checkpoint: %v", err)
			}
			m.check(t, st, fmt.Sprintf("after change %d and a checkpoint", i))
		case 1:
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = openStore(t, dir)
			if segs := segments(t, dir); len(segs) != 1 {
				t.Fatalf("after reopening: segments %v, want one", segs)
			}
			m.check(t, st, fmt.Sprintf("after change %d and reopening", i))
		}
	}
	m.check(t, st, "at the end")
	st.Close()
}

// TestJournalCheckpointsInBackground: with a small threshold the store
// checkpoints by itself while changes are written from another goroutine
// and checkpoints are asked for at the same time; nothing is lost, and
// the journal does not grow without bound.
func TestJournalCheckpointsInBackground(t *testing.T) {
	lan.SetCheckpointBytes(t, 4096)
	dir := t.TempDir()
	st := openStore(t, dir)
	r := rand.New(rand.NewPCG(3, 4))
	m := newStoreModel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := st.Checkpoint(); err != nil {
				t.Errorf("Checkpoint: %v", err)
				return
			}
		}
	})
	for range 2000 {
		if err := st.Apply(m.randomChange(r)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	m.check(t, st, "while open")
	var first string
	waitFor(t, 10*time.Second, func() bool { // the journal checkpointed down to its last segment
		segs := segments(t, dir)
		if len(segs) > 0 {
			first = segs[0]
		}
		return len(segs) == 1 && st.CheckpointErr() == nil
	})
	if strings.HasSuffix(first, lan.SegmentName(1)) {
		t.Errorf("segment %s is still the first: no checkpoint ran", first)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	m.check(t, st, "reopened")
}

// writeTwo writes changes a then b into a fresh store in dir and closes
// it; it returns the active segment's path and the offsets where a's and
// b's frames end.
func writeTwo(t *testing.T, dir string, a, b *lan.Change) (seg string, endA, endB int64) {
	t.Helper()
	st := openStore(t, dir)
	segs := segments(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	seg = segs[0]
	size := func() int64 {
		fi, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if err := st.Apply(a); err != nil {
		t.Fatal(err)
	}
	endA = size()
	if err := st.Apply(b); err != nil {
		t.Fatal(err)
	}
	endB = size()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return seg, endA, endB
}

// twoChangeFiles writes needs a then b into a fresh store, as writeTwo
// does, and returns the active segment's path and bytes, lan.db's bytes,
// and where a's and b's frames end.
func twoChangeFiles(t *testing.T) (seg string, whole, db []byte, endA, endB int64) {
	t.Helper()
	base := t.TempDir()
	seg, endA, endB = writeTwo(t, base, needChange("a", 1), needChange("b", 2))
	whole, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	db, err = os.ReadFile(filepath.Join(base, "lan.db"))
	if err != nil {
		t.Fatal(err)
	}
	return seg, whole, db, endA, endB
}

func needChange(name string, n int) *lan.Change {
	return &lan.Change{PutNeeds: []*needs.Need{{Name: name, Instances: n, Command: []string{"x"}}}}
}

// TestJournalTornTail: a crash in the middle of the last write leaves its
// frame cut short, or whole but with garbage in it, or the file padded
// with zeros; the store opens with every change before it, says what it
// dropped, and writes on.
func TestJournalTornTail(t *testing.T) {
	seg, whole, db, endA, endB := twoChangeFiles(t)
	flipped := bytes.Clone(whole)
	flipped[endB-3] ^= 0xff
	cases := map[string][]byte{
		"b's checksum fails":     flipped,
		"zeros after b":          append(bytes.Clone(whole), make([]byte, 4096)...),
		"b cut before its end":   whole[:endB-1],
		"b's header cut short":   whole[:endA+5],
		"b's header only":        whole[:endA+8],
		"b's header zeroed only": append(bytes.Clone(whole[:endA]), make([]byte, int(endB-endA))...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "lan.db"), db, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(seg)), b, 0o600); err != nil {
				t.Fatal(err)
			}
			st := openStore(t, dir)
			m := newStoreModel()
			m.needs["a"] = 1
			if name == "zeros after b" {
				m.needs["b"] = 2
			}
			m.check(t, st, "opened")
			if got := strings.Join(st.Recovered(), "\n"); !strings.Contains(got, "dropped") || !strings.Contains(got, filepath.Base(seg)) {
				t.Errorf("Recovered: %q, want the segment named and the bytes dropped", got)
			}
			if err := st.Apply(needChange("c", 3)); err != nil {
				t.Fatal(err)
			}
			m.needs["c"] = 3
			st.Close()
			st = openStore(t, dir)
			defer st.Close()
			m.check(t, st, "written on and reopened")
			if r := st.Recovered(); len(r) != 0 {
				t.Errorf("Recovered after a clean reopen: %q", r)
			}
		})
	}
}

// TestJournalDamaged: a frame that fails its checksum with a whole frame
// after it, a segment that is not one, and a missing segment between two:
// the store refuses to open, names the file (and the byte), says what to
// do, and changes no file.
func TestJournalDamaged(t *testing.T) {
	seg, whole, db, endA, _ := twoChangeFiles(t)
	n := strings.TrimPrefix(filepath.Base(seg), "lan.journal.")
	var active uint64
	if _, err := fmt.Sscanf(n, "%d", &active); err != nil {
		t.Fatal(err)
	}
	middle := bytes.Clone(whole)
	middle[endA-2] ^= 0xff
	other := bytes.Clone(whole)
	copy(other, "not a journal")
	for _, tt := range []struct {
		name  string
		files map[string][]byte // besides lan.db
		want  string
	}{
		{"a's payload flipped", map[string][]byte{filepath.Base(seg): middle}, "is damaged at byte 26 (checksum mismatch)"},
		{"not a segment", map[string][]byte{filepath.Base(seg): other}, "is damaged at byte 0 (not a journal segment)"},
		{"a gap", map[string][]byte{lan.SegmentName(active + 1): nil}, lan.SegmentName(active) + " is missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string][]byte{"lan.db": db}
			for name, b := range tt.files {
				if b == nil { // an empty segment, whole
					p := filepath.Join(dir, name)
					var k uint64
					fmt.Sscanf(strings.TrimPrefix(name, "lan.journal."), "%d", &k)
					if err := lan.WriteSegment(p, k); err != nil {
						t.Fatal(err)
					}
					b, _ = os.ReadFile(p)
				}
				files[name] = b
			}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := lan.OpenStore(filepath.Join(dir, "lan.db"))
			var de *lan.JournalDamagedError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "restore the data directory from a backup") {
				t.Fatalf("OpenStore: %v\nwant a JournalDamagedError with %q", err, tt.want)
			}
			for name, b := range files {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("%s changed by the refused open (%v)", name, err)
				}
			}
			if segs := segments(t, dir); len(segs) != len(tt.files) {
				t.Errorf("segments %v after the refused open, want %d", segs, len(tt.files))
			}
		})
	}
}

// TestJournalHugeOrNotAFile: a segment larger than any the store writes
// (a sparse file of 1 GiB and a byte), or a directory under a segment's
// name, is refused before it is read, naming it.
func TestJournalHugeOrNotAFile(t *testing.T) {
	for _, name := range []string{"huge", "directory"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			st := openStore(t, dir)
			if err := errors.Join(st.Apply(needChange("a", 1)), st.Close()); err != nil {
				t.Fatal(err)
			}
			seg := segments(t, dir)[0]
			want := "more than a segment holds"
			if name == "huge" {
				if err := os.Truncate(seg, 1<<30+1); err != nil {
					t.Fatal(err)
				}
			} else {
				want = "not a regular file"
				if err := errors.Join(os.Remove(seg), os.Mkdir(seg, 0o700)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := lan.OpenStore(filepath.Join(dir, "lan.db"))
			var de *lan.JournalDamagedError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Base(seg)) {
				t.Fatalf("OpenStore: %v, want the segment named and %q", err, want)
			}
		})
	}
}

// TestJournalMissing: every segment deleted: the store opens with lan.db
// as of its last checkpoint and says that the changes after it are lost.
func TestJournalMissing(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	if err := errors.Join(st.Apply(needChange("kept", 1)), st.Checkpoint(), st.Apply(needChange("lost", 2)), st.Close()); err != nil {
		t.Fatal(err)
	}
	for _, s := range segments(t, dir) {
		os.Remove(s)
	}
	st = openStore(t, dir)
	defer st.Close()
	m := newStoreModel()
	m.needs["kept"] = 1
	m.check(t, st, "opened without its journal")
	if got := strings.Join(st.Recovered(), "\n"); !strings.Contains(got, "is missing") || !strings.Contains(got, "lost") {
		t.Errorf("Recovered: %q, want the missing segment named and the loss said", got)
	}
}

// TestJournalStaleSegment: a checkpoint that wrote lan.db and stopped
// before removing its segment leaves a segment lan.db already holds; it
// is removed, not replayed over newer changes.
func TestJournalStaleSegment(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	if err := st.Apply(needChange("web", 1)); err != nil {
		t.Fatal(err)
	}
	old := segments(t, dir)[0]
	stale, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(st.Checkpoint(), st.Apply(needChange("web", 5)), st.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	m := newStoreModel()
	m.needs["web"] = 5
	m.check(t, st, "opened with a stale segment")
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale segment %s: %v, want it removed", old, err)
	}
}

// TestJournalFromOldStore: a lan.db written before the journal (no
// meta/journal, no segment) opens with its records and takes a journal.
func TestJournalFromOldStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lan.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"meta", "needs", "instances", "drained"} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		return errors.Join(tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("1")),
			tx.Bucket([]byte("needs")).Put([]byte("old"), []byte(`{"name":"old","instances":3,"command":["x"]}`)))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dir)
	m := newStoreModel()
	m.needs["old"] = 3
	m.check(t, st, "an old lan.db opened")
	if r := st.Recovered(); len(r) != 0 {
		t.Errorf("Recovered: %q, want nothing for an old lan.db", r)
	}
	if err := errors.Join(st.Apply(needChange("new", 1)), st.Close()); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	m.needs["new"] = 1
	m.check(t, st, "reopened")
}

// TestJournalDiskFull: on a full disk a write fails with the disk's
// error and leaves nothing of itself in the journal; once there is room
// the store writes on, and a reopened store holds exactly what was
// acknowledged.
func TestJournalDiskFull(t *testing.T) {
	disk := smalldisk.Mount(t, "2m")
	st := openStore(t, disk)
	m := newStoreModel()
	if err := st.Apply(needChange("before", 1)); err != nil {
		t.Fatal(err)
	}
	m.needs["before"] = 1
	seg := segments(t, disk)[0]
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	filler := smalldisk.Fill(t, disk)
	big := &lan.Change{}
	for i := range 64 {
		big.PutNeeds = append(big.PutNeeds, &needs.Need{Name: fmt.Sprintf("big-%d", i), Command: []string{strings.Repeat("x", 4000)}})
	}
	err = st.Apply(big)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), filepath.Base(seg)) {
		t.Fatalf("Apply on a full disk: %v, want the segment named and no space left", err)
	}
	if after, err := os.Stat(seg); err != nil || after.Size() != fi.Size() {
		t.Fatalf("after the failed write the segment is %v bytes (%v), want %d as before it", after.Size(), err, fi.Size())
	}
	m.check(t, st, "after the failed write")
	os.Remove(filler)
	if err := st.Apply(needChange("after", 2)); err != nil {
		t.Fatalf("with room again: %v", err)
	}
	m.needs["after"] = 2
	st.Close()
	st = openStore(t, disk)
	defer st.Close()
	m.check(t, st, "reopened")
}
