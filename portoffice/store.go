package portoffice

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"berth/needs"
)

// The bucket tree; see the package doc.
var (
	metaBucket   = []byte("meta")
	schemaKey    = []byte("schema")
	leasesBucket = []byte("leases")
)

// SchemaVersion is the on-disk format this package reads and writes.
const SchemaVersion = "1"

// record is the value stored under a port key.
type record struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"` // RFC 3339 with nanoseconds
}

func portKey(port int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(port)) }

// loadLocked checks the schema, writing it into a new file, and fills the
// in-memory index from the leases bucket.
func (o *Office) loadLocked(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	switch v := meta.Get(schemaKey); {
	case v == nil && tx.Bucket(leasesBucket) != nil:
		return fmt.Errorf("leases bucket without schema key: %w", ErrSchema)
	case v == nil:
		if err := meta.Put(schemaKey, []byte(SchemaVersion)); err != nil {
			return err
		}
	case string(v) != SchemaVersion:
		return fmt.Errorf("file has schema version %q, this berth reads %q: %w", v, SchemaVersion, ErrSchema)
	}
	lb, err := tx.CreateBucketIfNotExists(leasesBucket)
	if err != nil {
		return err
	}
	return lb.ForEachBucket(func(name []byte) error {
		proto := needs.Protocol(name)
		return lb.Bucket(name).ForEach(func(k, v []byte) error {
			l, err := decodeLease(proto, k, v)
			if err != nil {
				return fmt.Errorf("corrupt lease leases/%s/%x: %w", proto, k, err)
			}
			if old, ok := o.leases[l.Port]; ok {
				return fmt.Errorf("port %d leased twice: %s to %q and %s to %q", l.Port, old.Proto, old.Owner, l.Proto, l.Owner)
			}
			if old, ok := o.owners[l.Owner][proto]; ok {
				return fmt.Errorf("owner %q holds two %s ports: %d and %d", l.Owner, proto, old, l.Port)
			}
			o.addLocked(l)
			return nil
		})
	})
}

func decodeLease(proto needs.Protocol, k, v []byte) (Lease, error) {
	if len(k) != 2 {
		return Lease{}, fmt.Errorf("key is %d bytes, want 2", len(k))
	}
	port := int(binary.BigEndian.Uint16(k))
	if port == 0 {
		return Lease{}, errors.New("port 0")
	}
	if v == nil {
		return Lease{}, errors.New("nested bucket where a lease belongs")
	}
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return Lease{}, err
	}
	if rec.Owner == "" {
		return Lease{}, errors.New("empty owner")
	}
	return Lease{Proto: proto, Port: port, Owner: rec.Owner, Since: rec.Since}, nil
}

// putLeasesLocked writes ls in one transaction.
func (o *Office) putLeasesLocked(ls []Lease) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, l := range ls {
			b, err := tx.Bucket(leasesBucket).CreateBucketIfNotExists([]byte(l.Proto))
			if err != nil {
				return err
			}
			v, err := json.Marshal(record{Owner: l.Owner, Since: l.Since})
			if err != nil {
				return err
			}
			if err := b.Put(portKey(l.Port), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// deleteLeasesLocked removes ls in one transaction.
func (o *Office) deleteLeasesLocked(ls []Lease) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, l := range ls {
			if b := tx.Bucket(leasesBucket).Bucket([]byte(l.Proto)); b != nil {
				if err := b.Delete(portKey(l.Port)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
