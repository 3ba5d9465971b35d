package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"berth/boltfile"
	"berth/driverplugin"
	"berth/needs"
)

// record is what the master persists about each child, in
// <runtime>/master.db, bucket "children", key = allocation id, value = this
// struct as JSON. It is written without a pid just before the spawn, with
// the pid and start time once the child runs, and again when it first says
// ready; it is deleted when the child is gone. A restarted master adopts
// the child from it (see adopt.go), finding the child of a pid-less record
// in its cgroup or by its BERTH_ALLOC (spawn.FindLeader).
type record struct {
	Alloc    string     `json:"alloc"`
	Instance string     `json:"instance"`
	Need     needs.Need `json:"need"`
	// PID and StartTime (clock ticks since boot, /proc/<pid>/stat field 22)
	// name the process for good: a reused pid has another start time.
	PID       int                    `json:"pid"`
	StartTime uint64                 `json:"start_time"`
	Ports     map[needs.Protocol]int `json:"ports,omitempty"`
	Pipe      string                 `json:"pipe"`
	Log       string                 `json:"log"`
	StartedAt time.Time              `json:"started_at"`
	// Ready is true once the child said ready on its pipe.
	Ready bool `json:"ready,omitempty"`
	// Cgroup is the child's own cgroup, written with the first record
	// (before the spawn); "" for a child tracked by its process group and
	// BERTH_ALLOC.
	Cgroup string `json:"cgroup,omitempty"`
	// LimitCgroups are the child's own cgroups in the v1 hierarchies that
	// enforce its need's limits (spawn.Tracking.LimitCgroups).
	LimitCgroups []string `json:"limit_cgroups,omitempty"`
	// Upstreams are the ports of the child's upstream listeners, by
	// upstream name: its environment names them, so a restarted master
	// listens on them again. PeersFile is its BERTH_PEERS_FILE.
	Upstreams map[string]int `json:"upstreams,omitempty"`
	PeersFile string         `json:"peers_file,omitempty"`
	// Driver is the external driver that runs the child ("" for exec),
	// and Handle its handle for the task, to re-attach to it through the
	// driver after a restart (driverplugin.Plugin.Recover).
	Driver string               `json:"driver,omitempty"`
	Handle *driverplugin.Handle `json:"handle,omitempty"`
}

var bucketChildren = []byte("children")

// The schema version of master.db, stored raw under meta/schema like the
// lanmanager's and the port office's. A file written before the key
// existed holds the same format and is given it on open.
var (
	bucketMeta = []byte("meta")
	keySchema  = []byte("schema")
)

const stateSchema = "1"

// stateDB is master.db. Its writes are group-committed: calls that come
// while a commit is being written queue up and share the next bbolt
// transaction and its one fsync, written by the first of them once the
// disk is free. Each call returns once its own change is durable, so a
// record is on disk before the frame that reports it is queued.
type stateDB struct {
	db *bolt.DB

	mu      sync.Mutex // Protects following. A leaf.
	cond    *sync.Cond // signalled when a commit ends
	next    *stateBatch
	writing bool
}

// stateBatch is the changes that share one transaction.
type stateBatch struct {
	ops  []func(*bolt.Tx) error
	done chan struct{}
	errs []error // each op's, set before done is closed
}

// openState opens master.db, refusing a damaged file (see package
// boltfile) and a schema version this master does not read.
func openState(path string) (*stateDB, error) {
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (is another master using this runtime directory?)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open child records: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte(stateSchema)); err != nil {
				return err
			}
		case string(v) != stateSchema:
			return fmt.Errorf("schema version %q, this master reads %q: run the berth that wrote it, or move the file aside", v, stateSchema)
		}
		_, err = tx.CreateBucketIfNotExists(bucketChildren)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &stateDB{db: db}
	s.cond = sync.NewCond(&s.mu)
	return s, nil
}

// update makes op part of the next commit and returns once it is durable.
// Ops must be idempotent: when a shared transaction fails, each op of it
// is retried in a transaction of its own, so that one bad op does not fail
// the others.
func (s *stateDB) update(op func(*bolt.Tx) error) error {
	s.mu.Lock()
	if s.next == nil {
		s.next = &stateBatch{done: make(chan struct{})}
	}
	b := s.next
	i := len(b.ops)
	b.ops = append(b.ops, op)
	for s.writing && s.next == b {
		s.cond.Wait()
	}
	if s.next != b { // another caller wrote b or is writing it
		s.mu.Unlock()
		<-b.done
		return b.errs[i]
	}
	s.next, s.writing = nil, true
	s.mu.Unlock()
	s.write(b)
	s.mu.Lock()
	s.writing = false
	s.cond.Broadcast()
	s.mu.Unlock()
	close(b.done)
	return b.errs[i]
}

// write commits every op of b in one transaction; if that fails, each op
// is retried alone, and gets its own error.
func (s *stateDB) write(b *stateBatch) {
	b.errs = make([]error, len(b.ops))
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, op := range b.ops {
			if err := op(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	if len(b.ops) == 1 {
		b.errs[0] = err
		return
	}
	for i, op := range b.ops {
		b.errs[i] = s.db.Update(op)
	}
}

func (s *stateDB) put(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketChildren).Put([]byte(r.Alloc), b) })
}

// setReady marks a recorded child ready; a child without a record (gone
// meanwhile) is left without one.
func (s *stateDB) setReady(alloc string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChildren)
		v := b.Get([]byte(alloc))
		if v == nil {
			return nil
		}
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("child %s: %w", alloc, err)
		}
		if r.Ready {
			return nil
		}
		r.Ready = true
		out, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		return b.Put([]byte(alloc), out)
	})
}

func (s *stateDB) delete(alloc string) error {
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketChildren).Delete([]byte(alloc)) })
}

// all returns every record. Records that cannot be decoded are skipped and
// named in the error, which joins one error per such record.
func (s *stateDB) all() ([]*record, error) {
	var out []*record
	var errs []error
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChildren).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				errs = append(errs, fmt.Errorf("child record %q: %w", k, err))
				return nil
			}
			if r.Alloc != string(k) {
				errs = append(errs, fmt.Errorf("child record %q names allocation %q", k, r.Alloc))
				return nil
			}
			out = append(out, &r)
			return nil
		})
	})
	return out, errors.Join(append(errs, err)...)
}

func (s *stateDB) close() error { return s.db.Close() }
