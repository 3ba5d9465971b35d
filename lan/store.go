package lan

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"berth/boltfile"
	"berth/lifecycle"
	"berth/needs"
)

// Store persists needs and instances in a bbolt file. Every write is one
// fsync'd transaction: an API call's completes before it answers, and the
// instance records that events change are written in batches (see
// lan/commit.go) before any frame that depends on them is sent.
//
//	meta/schema      = "1"
//	needs/<name>     = JSON needs.Need
//	instances/<name> = JSON needs.Instance
//	drained/<master> = JSON {"since": time} (a draining master, by name)
//
// The drained bucket was added after schema 1 without changing it: an older
// lanmanager ignores it.
type Store struct {
	db *bolt.DB
}

var (
	bucketMeta      = []byte("meta")
	bucketNeeds     = []byte("needs")
	bucketInstances = []byte("instances")
	bucketDrained   = []byte("drained")
	keySchema       = []byte("schema")
)

const schemaVersion = "1"

// OpenStore opens (creating if needed) the store at path. A damaged file
// is refused with a [boltfile.DamagedError] that names it (see package
// boltfile), never opened.
func OpenStore(path string) (*Store, error) {
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (is another lanmanager using this data directory?)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v == nil {
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		} else if string(v) != schemaVersion {
			return fmt.Errorf("schema version %q, this lanmanager reads %q", v, schemaVersion)
		}
		for _, b := range [][]byte{bucketNeeds, bucketInstances, bucketDrained} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Load returns every need and instance.
func (s *Store) Load() (map[string]*needs.Need, map[string]*needs.Instance, error) {
	ns := map[string]*needs.Need{}
	is := map[string]*needs.Instance{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketNeeds).ForEach(func(k, v []byte) error {
			var n needs.Need
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("need %s: %w", k, err)
			}
			ns[n.Name] = &n
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketInstances).ForEach(func(k, v []byte) error {
			var in needs.Instance
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("instance %s: %w", k, err)
			}
			is[in.Name] = &in
			return nil
		})
	})
	return ns, is, err
}

// LoadDrained returns the names of the draining masters with the time each
// drain began.
func (s *Store) LoadDrained() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDrained).ForEach(func(k, v []byte) error {
			var d drainRecord
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("drained master %s: %w", k, err)
			}
			out[string(k)] = d.Since
			return nil
		})
	})
	return out, err
}

type drainRecord struct {
	Since time.Time `json:"since"`
}

// Change is a set of writes applied in one transaction.
type Change = lifecycle.Change

// Apply writes c in one transaction.
func (s *Store) Apply(c *Change) error {
	if c.Empty() {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		nb, ib := tx.Bucket(bucketNeeds), tx.Bucket(bucketInstances)
		for _, n := range c.PutNeeds {
			b, err := json.Marshal(n)
			if err != nil {
				return err
			}
			if err := nb.Put([]byte(n.Name), b); err != nil {
				return err
			}
		}
		for _, name := range c.DeleteNeeds {
			if err := nb.Delete([]byte(name)); err != nil {
				return err
			}
		}
		for _, in := range c.PutInstances {
			b, err := json.Marshal(in)
			if err != nil {
				return err
			}
			if err := ib.Put([]byte(in.Name), b); err != nil {
				return err
			}
		}
		for _, name := range c.DeleteInstances {
			if err := ib.Delete([]byte(name)); err != nil {
				return err
			}
		}
		db := tx.Bucket(bucketDrained)
		for name, since := range c.PutDrained {
			b, err := json.Marshal(drainRecord{Since: since})
			if err != nil {
				return err
			}
			if err := db.Put([]byte(name), b); err != nil {
				return err
			}
		}
		for _, name := range c.DeleteDrained {
			if err := db.Delete([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
}
