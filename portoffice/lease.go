package portoffice

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"berth/needs"
)

// Lease is one port held by one owner.
type Lease struct {
	Proto needs.Protocol
	Port  int
	Owner string // an allocation id
	Since time.Time
}

func compareLeases(a, b Lease) int {
	if c := compareProto(a.Proto, b.Proto); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// Lease gives owner one port for each protocol in protos, all or nothing,
// and returns them. For a protocol owner already holds, the held port is
// returned again; for the others Lease picks the lowest port of the
// protocol's range that nobody holds, that is not in quarantine and that
// binds on Options.Host right now. A port that fails that bind check
// because another process holds it (EADDRINUSE) is put in quarantine. A
// protocol without a range fails with ErrNoRange, a range without such a
// port with an *ExhaustedError; then nothing is leased, but the quarantine
// entries found on the way are kept. Empty protos returns an empty map.
// Lease returns once the leases are durable, written in a transaction it
// may share with concurrent calls (see the package doc).
func (o *Office) Lease(owner string, protos []needs.Protocol) (map[needs.Protocol]int, error) {
	if owner == "" {
		return nil, &needs.FieldError{Field: "owner", Msg: "must not be empty"}
	}
	var wanted []needs.Protocol
	for _, p := range protos {
		if !slices.Contains(wanted, p) {
			wanted = append(wanted, p)
		}
	}
	pk := &picking{owner: owner, picks: make(map[needs.Protocol]*pick)}
	o.mu.Lock()
	now := o.now()
	if err := o.pickPortsLocked(pk, wanted, now); err != nil {
		o.unmarkLocked(pk)
		o.awaitLocked(pk.lastBatch()) // the quarantine entries; errors are logged below
		pk.logQuarantine(o)
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("lease ports for %s: %w", owner, err)
	}
	got := make(map[needs.Protocol]int, len(wanted))
	var c changes
	since := now.UTC().Round(0)
	for _, p := range wanted {
		if port, ok := o.owners[owner][p]; ok {
			got[p] = port
			continue
		}
		port := pk.picks[p].port
		got[p] = port
		c.put = append(c.put, Lease{Proto: p, Port: port, Owner: owner, Since: since})
	}
	o.unmarkLocked(pk)
	if len(c.put) > 0 {
		o.pruneLocked(now, &c)
	}
	if err := o.awaitLocked(o.submitLocked(&c)); err != nil {
		return nil, fmt.Errorf("lease ports for %s: %w", owner, err)
	}
	for _, l := range c.put {
		o.log.Debug("leased", "proto", l.Proto, "port", l.Port, "owner", owner)
	}
	pk.logQuarantine(o)
	return got, nil
}

// Release gives back every port owner holds and returns them in ascending
// order. An owner with no leases gives nil, nil. Each freed port that is
// not in quarantine already is probed: one that another process holds
// (EADDRINUSE) although its owner is gone is put in quarantine.
func (o *Office) Release(owner string) ([]int, error) {
	o.mu.Lock()
	if err := o.writableLocked(); err != nil {
		o.mu.Unlock()
		return nil, err
	}
	ls := o.ownedLocked(owner)
	if len(ls) == 0 {
		o.mu.Unlock()
		return nil, nil
	}
	now := o.now()
	checked := o.checkFreedLocked(ls, now)
	if err := o.writableLocked(); err != nil {
		o.mu.Unlock()
		return nil, err
	}
	// Again: a concurrent call for the same owner may have changed them.
	if ls = o.ownedLocked(owner); len(ls) == 0 {
		o.mu.Unlock()
		return nil, nil
	}
	c := changes{drop: ls}
	o.pruneLocked(now, &c)
	o.quarantineFreedLocked(now, &c, checked)
	if err := o.awaitLocked(o.submitLocked(&c)); err != nil {
		return nil, fmt.Errorf("release ports of %s: %w", owner, err)
	}
	ports := make([]int, len(ls))
	for i, l := range ls {
		ports[i] = l.Port
		o.log.Debug("released", "proto", l.Proto, "port", l.Port, "owner", owner)
	}
	o.logQuarantine(c.quarantine)
	slices.Sort(ports)
	return ports, nil
}

// Reclaim releases, in one transaction, every lease whose owner alive
// reports gone, and returns those leases sorted by protocol then port.
// alive is called without the Office's lock held, once per owner. The
// freed ports are probed as in Release.
func (o *Office) Reclaim(alive func(owner string) bool) ([]Lease, error) {
	o.mu.Lock()
	owners := slices.Sorted(maps.Keys(o.owners))
	o.mu.Unlock()
	var dead []string
	for _, owner := range owners {
		if !alive(owner) {
			dead = append(dead, owner)
		}
	}
	o.mu.Lock()
	if err := o.writableLocked(); err != nil {
		o.mu.Unlock()
		return nil, err
	}
	var c changes
	for _, owner := range dead {
		c.drop = append(c.drop, o.ownedLocked(owner)...)
	}
	if len(c.drop) == 0 {
		o.mu.Unlock()
		return nil, nil
	}
	now := o.now()
	o.pruneLocked(now, &c)
	o.quarantineFreedLocked(now, &c, nil)
	if err := o.awaitLocked(o.submitLocked(&c)); err != nil {
		return nil, fmt.Errorf("reclaim ports of %d owners: %w", len(dead), err)
	}
	for _, l := range c.drop {
		o.log.Info("reclaimed", "proto", l.Proto, "port", l.Port, "owner", l.Owner)
	}
	o.logQuarantine(c.quarantine)
	ls := slices.Clone(c.drop)
	slices.SortFunc(ls, compareLeases)
	return ls, nil
}

// Leases returns every current lease, sorted by protocol (in the order of
// needs.Protocols) then port.
func (o *Office) Leases() []Lease {
	o.mu.Lock()
	ls := slices.Collect(maps.Values(o.leases))
	o.mu.Unlock()
	slices.SortFunc(ls, compareLeases)
	return ls
}

func (o *Office) ownedLocked(owner string) []Lease {
	var ls []Lease
	for _, port := range o.owners[owner] {
		ls = append(ls, o.leases[port])
	}
	slices.SortFunc(ls, compareLeases)
	return ls
}

func (o *Office) addLocked(l Lease) {
	o.taken.add(l.Port)
	o.leases[l.Port] = l
	if o.owners[l.Owner] == nil {
		o.owners[l.Owner] = make(map[needs.Protocol]int)
	}
	o.owners[l.Owner][l.Proto] = l.Port
}

func (o *Office) removeLocked(l Lease) {
	o.taken.remove(l.Port)
	delete(o.leases, l.Port)
	delete(o.owners[l.Owner], l.Proto)
	if len(o.owners[l.Owner]) == 0 {
		delete(o.owners, l.Owner)
	}
}
