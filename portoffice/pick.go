package portoffice

import (
	"fmt"
	"time"

	"berth/needs"
)

// picking is one Lease call's search for its ports.
type picking struct {
	owner string
	picks map[needs.Protocol]*pick
	// quarantined lists the entries the search made, each with the batch
	// that writes it.
	quarantined []quarantined
}

type quarantined struct {
	q Quarantine
	b *batch
}

// pick is the search for one protocol's port.
type pick struct {
	port int // the candidate, marked in Office.probing; 0 for none
	from int // where the search goes on after a failed candidate
	ex   *ExhaustedError
}

// pickPortsLocked finds, for each protocol of wanted that pk.owner does not
// hold, in order, the lowest port of its range that nobody holds, that no
// other call is checking, that is not in quarantine and that passes the
// bind check. It is called with o.mu held and returns with it held, but
// releases it around each bind check, so that concurrent calls check their
// candidates in parallel; meanwhile the candidates are marked in o.probing
// and no other call picks or checks them. A candidate that fails with
// EADDRINUSE is quarantined at once. The chosen ports are still marked on
// return, on failure too: the caller leases them, or not, and calls
// unmarkLocked in the same critical section.
func (o *Office) pickPortsLocked(pk *picking, wanted []needs.Protocol, now time.Time) error {
	// Until a pass over wanted finds every port without releasing o.mu:
	// what a check found may have changed meanwhile.
	for {
		unlocked := false
		for _, p := range wanted {
			u, err := o.pickPortLocked(pk, p, now)
			if err != nil {
				return err
			}
			unlocked = unlocked || u
		}
		if !unlocked {
			return nil
		}
	}
}

// pickPortLocked finds p's port for pickPortsLocked, or keeps the one found
// before if it still qualifies. It reports whether it released o.mu.
func (o *Office) pickPortLocked(pk *picking, p needs.Protocol, now time.Time) (unlocked bool, err error) {
	pp := pk.picks[p]
	for {
		if err := o.writableLocked(); err != nil {
			return unlocked, err
		}
		if _, ok := o.owners[pk.owner][p]; ok {
			// Held, perhaps leased by a concurrent call for the same owner.
			if pp != nil && pp.port != 0 {
				o.probing.remove(pp.port)
				pp.port = 0
			}
			return unlocked, nil
		}
		if pp == nil {
			r, ok := o.ranges[p]
			if !ok {
				return unlocked, fmt.Errorf("%q: %w", p, ErrNoRange)
			}
			pp = &pick{from: r.Start, ex: &ExhaustedError{Proto: p, Range: r}}
			pk.picks[p] = pp
		}
		if pp.port != 0 {
			q, ok := o.quarantine[pp.port]
			if !ok || !now.Before(q.Until) {
				return unlocked, nil // checked, and still free
			}
			// Office.Quarantine put it in quarantine after it was checked.
			pp.ex.addQuarantined(q)
			o.probing.remove(pp.port)
			pp.from, pp.port = pp.port+1, 0
		}
		if err := o.candidateLocked(pp, now); err != nil {
			return unlocked, err
		}
		o.mu.Unlock()
		err := o.probe(o.host, pp.port)
		o.mu.Lock()
		unlocked = true
		if err == nil {
			continue // check the rest again under the lock
		}
		pp.ex.Unbindable, pp.ex.BindErr = pp.ex.Unbindable+1, err
		if isInUse(err) && o.writableLocked() == nil {
			q := o.newQuarantine(p, pp.port, now, err)
			b := o.submitLocked(&changes{quarantine: []Quarantine{q}})
			pk.quarantined = append(pk.quarantined, quarantined{q, b})
		}
		o.probing.remove(pp.port)
		pp.from, pp.port = pp.port+1, 0
	}
}

// candidateLocked marks the lowest port of pp's range from pp.from on that
// nobody holds, nobody checks and is not in quarantine, and makes it pp's
// candidate. If there is none it returns pp.ex, completed.
func (o *Office) candidateLocked(pp *pick, now time.Time) error {
	r := pp.ex.Range
	for port := o.taken.nextFree(pp.from, r.End()); port > 0; port = o.taken.nextFree(port+1, r.End()) {
		if o.probing.has(port) {
			continue
		}
		if q, ok := o.quarantine[port]; ok && now.Before(q.Until) {
			pp.ex.addQuarantined(q)
			continue
		}
		o.probing.add(port)
		pp.port, pp.from = port, port
		return nil
	}
	pp.ex.Leased = o.taken.count(r.Start, r.End()) + o.probing.count(r.Start, r.End())
	return pp.ex
}

// unmarkLocked removes pk's candidates from o.probing.
func (o *Office) unmarkLocked(pk *picking) {
	for _, pp := range pk.picks {
		if pp.port != 0 {
			o.probing.remove(pp.port)
			pp.port = 0
		}
	}
}

// lastBatch returns the batch of pk's last quarantine entry, or nil.
func (pk *picking) lastBatch() *batch {
	if len(pk.quarantined) == 0 {
		return nil
	}
	return pk.quarantined[len(pk.quarantined)-1].b
}

// logQuarantine logs pk's quarantine entries, or the error that kept one
// from the file, once they are written: the caller has waited for the
// batch of the last one, or a later one.
func (pk *picking) logQuarantine(o *Office) {
	for _, e := range pk.quarantined {
		if err := e.b.wait(); err != nil {
			o.log.Error("write quarantine", "proto", e.q.Proto, "port", e.q.Port, "err", err)
			continue
		}
		o.logQuarantine([]Quarantine{e.q})
	}
}
