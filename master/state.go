package master

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/needs"
)

// record is what the master persists about each child, in
// <runtime>/master.db, bucket "children", key = allocation id.
type record struct {
	Alloc     string                 `json:"alloc"`
	Instance  string                 `json:"instance"`
	PID       int                    `json:"pid"`
	StartTime uint64                 `json:"start_time"`
	Ports     map[needs.Protocol]int `json:"ports,omitempty"`
	Pipe      string                 `json:"pipe"`
	Log       string                 `json:"log"`
	StartedAt time.Time              `json:"started_at"`
}

var bucketChildren = []byte("children")

type stateDB struct{ db *bolt.DB }

func openState(path string) (*stateDB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (is another master using this runtime directory?)", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketChildren)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &stateDB{db: db}, nil
}

func (s *stateDB) put(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketChildren).Put([]byte(r.Alloc), b) })
}

func (s *stateDB) delete(alloc string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketChildren).Delete([]byte(alloc)) })
}

func (s *stateDB) all() ([]*record, error) {
	var out []*record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChildren).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("child %s: %w", k, err)
			}
			out = append(out, &r)
			return nil
		})
	})
	return out, err
}

func (s *stateDB) close() error { return s.db.Close() }
