package portoffice

import (
	"cmp"
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
// protocol's range that nobody holds and that binds on Options.Host right
// now. A protocol without a range fails with ErrNoRange, a range without
// such a port with an *ExhaustedError; then nothing is leased. Empty protos
// returns an empty map.
func (o *Office) Lease(owner string, protos []needs.Protocol) (map[needs.Protocol]int, error) {
	if owner == "" {
		return nil, &needs.FieldError{Field: "owner", Msg: "must not be empty"}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	got := make(map[needs.Protocol]int, len(protos))
	var fresh []Lease
	now := time.Now().UTC().Round(0)
	for _, p := range protos {
		if _, ok := got[p]; ok {
			continue
		}
		if port, ok := o.owners[owner][p]; ok {
			got[p] = port
			continue
		}
		port, err := o.pickLocked(p)
		if err != nil {
			return nil, fmt.Errorf("lease ports for %s: %w", owner, err)
		}
		got[p] = port
		fresh = append(fresh, Lease{Proto: p, Port: port, Owner: owner, Since: now})
	}
	if len(fresh) == 0 {
		return got, nil
	}
	if err := o.putLeasesLocked(fresh); err != nil {
		return nil, fmt.Errorf("lease ports for %s: %w", owner, err)
	}
	for _, l := range fresh {
		o.addLocked(l)
		o.log.Debug("leased", "proto", l.Proto, "port", l.Port, "owner", owner)
	}
	return got, nil
}

// pickLocked returns the lowest port of p's range that is neither leased
// nor failing the bind check.
func (o *Office) pickLocked(p needs.Protocol) (int, error) {
	r, ok := o.ranges[p]
	if !ok {
		return 0, fmt.Errorf("%q: %w", p, ErrNoRange)
	}
	unbindable := 0
	var bindErr error
	for port := o.taken.nextFree(r.Start, r.End()); port > 0; port = o.taken.nextFree(port+1, r.End()) {
		if err := o.probe(o.host, port); err != nil {
			unbindable, bindErr = unbindable+1, err
			continue
		}
		return port, nil
	}
	return 0, &ExhaustedError{Proto: p, Range: r, Leased: o.taken.count(r.Start, r.End()),
		Unbindable: unbindable, BindErr: bindErr}
}

// Release gives back every port owner holds and returns them in ascending
// order. An owner with no leases gives nil, nil.
func (o *Office) Release(owner string) ([]int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	ls := o.ownedLocked(owner)
	if len(ls) == 0 {
		return nil, nil
	}
	if err := o.deleteLeasesLocked(ls); err != nil {
		return nil, fmt.Errorf("release ports of %s: %w", owner, err)
	}
	ports := make([]int, len(ls))
	for i, l := range ls {
		o.removeLocked(l)
		ports[i] = l.Port
		o.log.Debug("released", "proto", l.Proto, "port", l.Port, "owner", owner)
	}
	slices.Sort(ports)
	return ports, nil
}

// Reclaim releases, in one transaction, every lease whose owner alive
// reports gone, and returns those leases sorted by protocol then port.
// alive is called without the Office's lock held, once per owner.
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
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	var ls []Lease
	for _, owner := range dead {
		ls = append(ls, o.ownedLocked(owner)...)
	}
	if len(ls) == 0 {
		return nil, nil
	}
	if err := o.deleteLeasesLocked(ls); err != nil {
		return nil, fmt.Errorf("reclaim ports of %d owners: %w", len(dead), err)
	}
	for _, l := range ls {
		o.removeLocked(l)
		o.log.Info("reclaimed", "proto", l.Proto, "port", l.Port, "owner", l.Owner)
	}
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
