package lan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"berth/boltfile"
	"berth/lifecycle"
	"berth/needs"
)

// Store persists needs and instances: lan.db, a bbolt file, is the
// checkpoint, and the journal beside it (lan/journal.go) holds the changes
// written since. Every write is one appended frame and one fdatasync: an
// API call's completes before it answers, and the instance records that
// events change are written in batches (see lan/commit.go) before any
// frame that depends on them is sent. In lan.db:
//
//	meta/schema      = "1"
//	meta/journal     = the last journal segment lan.db holds the changes of (decimal)
//	needs/<name>     = JSON needs.Need
//	instances/<name> = JSON needs.Instance
//	drained/<master> = JSON {"since": time} (a draining master, by name)
//
// The drained bucket and meta/journal were added after schema 1 without
// changing it. A lan.db without meta/journal (from before the journal)
// has no segments to replay.
type Store struct {
	db   *bolt.DB
	path string // lan.db
	dir  string

	done chan struct{} // closed by Close: the checkpointer ends
	kick chan struct{} // the journal has grown: checkpoint
	wg   sync.WaitGroup

	ckMu    sync.Mutex // held by a checkpoint; protects through
	through uint64     // lan.db holds the changes of the segments up to this one

	mu      sync.Mutex // Protects following.
	f       *os.File   // the active segment
	active  uint64     // its number
	off     int64      // the end of its whole frames
	broken  error      // a failed write that could not be cut off yet
	pending *records   // what the segments after through changed
	grown   int64      // bytes appended since the last checkpoint
	ckBytes int64      // checkpoint when grown reaches it
	closed  bool

	recovered []string // what OpenStore repaired or found missing, for the log
	ckErr     error    // the last failed checkpoint's error, nil after one succeeds
}

var (
	bucketMeta      = []byte("meta")
	bucketNeeds     = []byte("needs")
	bucketInstances = []byte("instances")
	bucketDrained   = []byte("drained")
	keySchema       = []byte("schema")
	keyJournal      = []byte("journal")
)

const schemaVersion = "1"

// ErrStoreClosed is returned by writes to a closed [Store].
var ErrStoreClosed = errors.New("store closed")

// OpenStore opens (creating if needed) the store at path and the journal
// beside it, whose changes it writes into path before it returns. A
// damaged lan.db is refused with a [boltfile.DamagedError], a damaged or
// missing journal segment with a [*JournalDamagedError], each naming the
// file; neither is changed. A frame a crash cut short at the journal's end
// is dropped (it was never acknowledged); [Store.Recovered] says so.
func OpenStore(path string) (*Store, error) {
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (is another lanmanager using this data directory?)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{db: db, path: path, dir: filepath.Dir(path), pending: newRecords(),
		done: make(chan struct{}), kick: make(chan struct{}, 1), ckBytes: checkpointBytes.Load()}
	if err := s.open(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.wg.Go(s.checkpointer)
	return s, nil
}

// open checks lan.db's schema, reads the journal's segments, and only
// then writes: a new segment, then lan.db (its buckets, and the journal's
// changes in one transaction), then it removes the old segments. A store
// refused leaves every file as it was.
func (s *Store) open() error {
	var schema []byte
	var hasJournal bool
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		schema = bytes.Clone(meta.Get(keySchema))
		if v := meta.Get(keyJournal); v != nil {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("meta/journal %q: not a segment number", v)
			}
			s.through, hasJournal = n, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if schema != nil && string(schema) != schemaVersion {
		return fmt.Errorf("schema version %q, this lanmanager reads %q", schema, schemaVersion)
	}
	segs, err := listSegments(s.dir)
	if err != nil {
		return fmt.Errorf("list journal segments: %w", err)
	}
	var stale, live []uint64
	for _, n := range segs {
		if n <= s.through {
			stale = append(stale, n) // a checkpoint wrote them; it stopped before removing them
		} else {
			live = append(live, n)
		}
	}
	want := s.through + 1
	for _, n := range live {
		if n != want {
			return &JournalDamagedError{Path: filepath.Join(s.dir, segmentName(want)), Offset: -1,
				Reason: fmt.Sprintf("is missing (lan.db holds the changes up to segment %d; segment %d is there)", s.through, n)}
		}
		want++
	}
	if hasJournal && len(live) == 0 {
		s.recovered = append(s.recovered, fmt.Sprintf("journal segment %s is missing: starting from lan.db as of its last checkpoint; the changes written after it are lost",
			segmentName(s.through+1)))
	}
	recs := newRecords()
	for i, n := range live {
		path := filepath.Join(s.dir, segmentName(n))
		entries, good, err := readSegment(path, n, i == len(live)-1)
		if err != nil {
			var de *JournalDamagedError
			if errors.As(err, &de) {
				return err
			}
			return fmt.Errorf("read journal segment %s: %w", path, err)
		}
		if fi, err := os.Stat(path); err == nil && fi.Size() > good && good > 0 {
			s.recovered = append(s.recovered, fmt.Sprintf("journal segment %s: dropped %d bytes after its last whole frame (a write a crash interrupted)",
				path, fi.Size()-good))
		}
		for _, e := range entries {
			recs.add(e)
		}
	}
	last := s.through
	if len(live) > 0 {
		last = live[len(live)-1]
	}
	f, err := createSegment(s.dir, last+1)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if schema == nil {
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketNeeds, bucketInstances, bucketDrained} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return writeRecords(tx, recs, last)
	})
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write the journal into lan.db: %w", err)
	}
	s.f, s.active, s.off, s.through = f, last+1, int64(journalHeader), last
	for _, n := range append(stale, live...) {
		os.Remove(filepath.Join(s.dir, segmentName(n)))
	}
	return nil
}

// writeRecords writes recs into lan.db and records that it holds the
// journal up to segment through.
func writeRecords(tx *bolt.Tx, recs *records, through uint64) error {
	for _, p := range []struct {
		bucket []byte
		m      map[string][]byte
	}{{bucketNeeds, recs.needs}, {bucketInstances, recs.instances}, {bucketDrained, recs.drained}} {
		b := tx.Bucket(p.bucket)
		for k, v := range p.m {
			var err error
			if v == nil {
				err = b.Delete([]byte(k))
			} else {
				err = b.Put([]byte(k), v)
			}
			if err != nil {
				return fmt.Errorf("%s/%s: %w", p.bucket, k, err)
			}
		}
	}
	return tx.Bucket(bucketMeta).Put(keyJournal, []byte(strconv.FormatUint(through, 10)))
}

// Recovered says what OpenStore repaired: a torn frame dropped, or a
// journal found missing.
func (s *Store) Recovered() []string { return s.recovered }

// Checkpoint writes the journal's changes into lan.db in one transaction
// and removes their segments; appends go on meanwhile, to a new segment.
// The store checkpoints by itself once the journal holds checkpointBytes.
func (s *Store) Checkpoint() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrStoreClosed
	}
	if s.pending.n == 0 || s.broken != nil {
		s.mu.Unlock()
		return s.broken
	}
	old := s.active
	f, err := createSegment(s.dir, old+1)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.f.Close()
	snap := s.pending
	s.f, s.active, s.off, s.grown, s.pending = f, old+1, int64(journalHeader), 0, newRecords()
	s.mu.Unlock()

	if err := s.db.Update(func(tx *bolt.Tx) error { return writeRecords(tx, snap, old) }); err != nil {
		s.mu.Lock()
		s.pending.under(snap) // written again with the next checkpoint; its segments stay
		s.mu.Unlock()
		return fmt.Errorf("checkpoint into %s: %w", s.path, err)
	}
	for n := s.through + 1; n <= old; n++ {
		os.Remove(filepath.Join(s.dir, segmentName(n)))
	}
	s.through = old
	return nil
}

// checkpointer checkpoints when Apply says the journal has grown, until
// Close. After a failed checkpoint it tries again, 1 s doubling to 30 s
// later.
func (s *Store) checkpointer() {
	retryLoop(s.done, s.kick, time.Second, 30*time.Second, func() bool {
		err := s.Checkpoint()
		s.mu.Lock()
		s.ckErr = err
		s.mu.Unlock()
		return err == nil || errors.Is(err, ErrStoreClosed)
	})
}

// CheckpointErr returns the error of the last checkpoint if it failed.
func (s *Store) CheckpointErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ckErr
}

// Close stops the checkpointer (after the checkpoint it is making, if
// any) and closes the files. The journal is kept: the next OpenStore
// writes it into lan.db.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
	return errors.Join(s.f.Close(), s.db.Close())
}

// Load returns every need and instance.
func (s *Store) Load() (map[string]*needs.Need, map[string]*needs.Instance, error) {
	ns := map[string]*needs.Need{}
	is := map[string]*needs.Instance{}
	err := s.read(func(b []byte, k, v []byte) error {
		switch string(b) {
		case string(bucketNeeds):
			if v == nil {
				delete(ns, string(k))
				return nil
			}
			var n needs.Need
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("need %s: %w", k, err)
			}
			ns[string(k)] = &n
		case string(bucketInstances):
			if v == nil {
				delete(is, string(k))
				return nil
			}
			var in needs.Instance
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("instance %s: %w", k, err)
			}
			is[string(k)] = &in
		}
		return nil
	})
	return ns, is, err
}

// LoadDrained returns the names of the draining masters with the time each
// drain began.
func (s *Store) LoadDrained() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.read(func(b []byte, k, v []byte) error {
		if string(b) != string(bucketDrained) {
			return nil
		}
		if v == nil {
			delete(out, string(k))
			return nil
		}
		var d drainRecord
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("drained master %s: %w", k, err)
		}
		out[string(k)] = d.Since
		return nil
	})
	return out, err
}

// read calls fn with every record of lan.db's needs, instances and
// drained buckets, then with every record the journal changed since (v
// nil: deleted).
func (s *Store) read(fn func(bucket, k, v []byte) error) error {
	s.ckMu.Lock() // no checkpoint moves records from the journal to lan.db meanwhile
	defer s.ckMu.Unlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketNeeds, bucketInstances, bucketDrained} {
			if err := tx.Bucket(b).ForEach(func(k, v []byte) error { return fn(b, k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []struct {
		bucket []byte
		m      map[string][]byte
	}{{bucketNeeds, s.pending.needs}, {bucketInstances, s.pending.instances}, {bucketDrained, s.pending.drained}} {
		for k, v := range p.m {
			if err := fn(p.bucket, []byte(k), v); err != nil {
				return err
			}
		}
	}
	return nil
}

type drainRecord struct {
	Since time.Time `json:"since"`
}

// Change is a set of writes applied in one transaction.
type Change = lifecycle.Change

// Apply writes c as one frame of the journal: one write and one
// fdatasync. A write that fails is cut off the journal again, so that
// nothing of c is kept; if even that fails, every later Apply tries
// the cut first and fails until it succeeds.
func (s *Store) Apply(c *Change) error {
	if c.Empty() {
		return nil
	}
	e, err := encodeChange(c)
	if err != nil {
		return fmt.Errorf("encode change: %w", err)
	}
	payload := e.payload()
	frame := appendFrame(make([]byte, 0, frameHeader+len(payload)), payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	if s.broken != nil {
		if err := s.cut(); err != nil {
			return fmt.Errorf("journal segment %s cannot be written since a failed write (%v): %w", s.f.Name(), s.broken, err)
		}
	}
	_, err = s.f.WriteAt(frame, s.off)
	if err == nil {
		err = fdatasync(s.f)
	}
	if err != nil {
		s.broken = err
		s.cut()
		return fmt.Errorf("write journal segment %s: %w", s.f.Name(), err)
	}
	s.off += int64(len(frame))
	s.grown += int64(len(frame))
	s.pending.add(e)
	if s.grown >= s.ckBytes {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// cut truncates the active segment to its whole frames; s.mu held.
func (s *Store) cut() error {
	if err := s.f.Truncate(s.off); err != nil {
		return err
	}
	if err := fdatasync(s.f); err != nil {
		return err
	}
	s.broken = nil
	return nil
}
