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
	metaBucket       = []byte("meta")
	schemaKey        = []byte("schema")
	leasesBucket     = []byte("leases")
	quarantineBucket = []byte("quarantine")
)

// SchemaVersion is the on-disk format this package reads and writes.
const SchemaVersion = "1"

// record is the value stored under a port key of leases/<proto>.
type record struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"` // RFC 3339 with nanoseconds
}

// qrecord is the value stored under a port key of quarantine.
type qrecord struct {
	Proto  needs.Protocol `json:"proto"`
	Since  time.Time      `json:"since"`
	Until  time.Time      `json:"until"`
	Reason string         `json:"reason,omitempty"`
}

func portKey(port int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(port)) }

// loadLocked checks the schema, writing it into a new file, and fills the
// in-memory index from the leases and quarantine buckets.
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
	if err := o.loadLeasesLocked(lb); err != nil {
		return err
	}
	return o.loadQuarantineLocked(tx)
}

func (o *Office) loadLeasesLocked(lb *bolt.Bucket) error {
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

// loadQuarantineLocked fills o.quarantine from the quarantine bucket,
// created if missing (files written before quarantine existed lack it). It
// deletes the entries that have expired, and brings an Until further away
// than one quarantine period (the clock went back) down to now plus one
// period, so a port is never kept out for longer.
func (o *Office) loadQuarantineLocked(tx *bolt.Tx) error {
	qb, err := tx.CreateBucketIfNotExists(quarantineBucket)
	if err != nil {
		return err
	}
	now := o.now()
	var expired []int
	var clamped []Quarantine
	err = qb.ForEach(func(k, v []byte) error {
		q, err := decodeQuarantine(k, v)
		if err != nil {
			return fmt.Errorf("corrupt quarantine entry quarantine/%x: %w", k, err)
		}
		switch {
		case !now.Before(q.Until):
			expired = append(expired, q.Port)
			return nil
		case q.Until.After(now.Add(o.qperiod)):
			q.Until = now.Add(o.qperiod)
			clamped = append(clamped, q)
		}
		o.quarantine[q.Port] = q
		return nil
	})
	if err != nil {
		return err
	}
	for _, port := range expired {
		if err := qb.Delete(portKey(port)); err != nil {
			return err
		}
	}
	return putQuarantine(tx, clamped)
}

// decodeQuarantine decodes one entry of the quarantine bucket.
func decodeQuarantine(k, v []byte) (Quarantine, error) {
	if len(k) != 2 {
		return Quarantine{}, fmt.Errorf("key is %d bytes, want 2", len(k))
	}
	port := int(binary.BigEndian.Uint16(k))
	if port == 0 {
		return Quarantine{}, errors.New("port 0")
	}
	if v == nil {
		return Quarantine{}, errors.New("nested bucket where an entry belongs")
	}
	var rec qrecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return Quarantine{}, err
	}
	if rec.Proto == "" {
		return Quarantine{}, errors.New("empty proto")
	}
	if rec.Until.IsZero() {
		return Quarantine{}, errors.New("no until")
	}
	return Quarantine{Proto: rec.Proto, Port: port, Since: rec.Since, Until: rec.Until, Reason: rec.Reason}, nil
}

func putQuarantine(tx *bolt.Tx, qs []Quarantine) error {
	qb := tx.Bucket(quarantineBucket)
	for _, q := range qs {
		v, err := json.Marshal(qrecord{Proto: q.Proto, Since: q.Since.UTC(), Until: q.Until.UTC(), Reason: q.Reason})
		if err != nil {
			return err
		}
		if err := qb.Put(portKey(q.Port), v); err != nil {
			return err
		}
	}
	return nil
}

// changes is what one call writes: deletes first, then puts, so a port
// whose quarantine expired and was renewed ends up renewed. The changes of
// concurrent calls are written in one transaction, in the order the calls
// made them (see commit.go).
type changes struct {
	put        []Lease      // new leases
	drop       []Lease      // released leases
	quarantine []Quarantine // new or renewed quarantine entries
	expired    []int        // quarantine entries to delete
}

func (c *changes) empty() bool {
	return len(c.put) == 0 && len(c.drop) == 0 && len(c.quarantine) == 0 && len(c.expired) == 0
}

// applyLocked makes c in the in-memory index.
func (o *Office) applyLocked(c *changes) {
	for _, l := range c.drop {
		o.removeLocked(l)
	}
	for _, port := range c.expired {
		delete(o.quarantine, port)
	}
	for _, l := range c.put {
		o.addLocked(l)
	}
	for _, q := range c.quarantine {
		o.quarantine[q.Port] = q
	}
}

// writeChanges writes c in tx.
func writeChanges(tx *bolt.Tx, c *changes) error {
	lb, qb := tx.Bucket(leasesBucket), tx.Bucket(quarantineBucket)
	for _, l := range c.drop {
		if b := lb.Bucket([]byte(l.Proto)); b != nil {
			if err := b.Delete(portKey(l.Port)); err != nil {
				return err
			}
		}
	}
	for _, port := range c.expired {
		if err := qb.Delete(portKey(port)); err != nil {
			return err
		}
	}
	for _, l := range c.put {
		b, err := lb.CreateBucketIfNotExists([]byte(l.Proto))
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
	return putQuarantine(tx, c.quarantine)
}

// reloadLocked replaces the in-memory index with the file's, after a
// write failed. Quarantine entries that the file holds unchanged keep their
// in-memory end, which carries a monotonic clock reading.
func (o *Office) reloadLocked() error {
	prevQ := o.quarantine
	o.taken = portSet{}
	o.leases = make(map[int]Lease)
	o.owners = make(map[string]map[needs.Protocol]int)
	o.quarantine = make(map[int]Quarantine)
	return o.db.View(func(tx *bolt.Tx) error {
		if err := o.loadLeasesLocked(tx.Bucket(leasesBucket)); err != nil {
			return err
		}
		return tx.Bucket(quarantineBucket).ForEach(func(k, v []byte) error {
			q, err := decodeQuarantine(k, v)
			if err != nil {
				return fmt.Errorf("corrupt quarantine entry quarantine/%x: %w", k, err)
			}
			if old, ok := prevQ[q.Port]; ok && old.Until.Equal(q.Until) {
				q = old
			}
			o.quarantine[q.Port] = q
			return nil
		})
	})
}
