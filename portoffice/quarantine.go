package portoffice

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"berth/needs"
)

// Quarantine is a port kept out of leases until Until, because a process
// that berth does not know about held it.
type Quarantine struct {
	Proto needs.Protocol // the protocol whose range the port was leased from
	Port  int
	Since time.Time
	Until time.Time
	// Reason is why, usually the bind error, e.g. "listen tcp
	// 127.0.0.1:16001: bind: address already in use".
	Reason string
}

// Quarantine keeps port out of leases for Options.Quarantine from now, for
// a caller that found it taken by an outside process, for example when
// binding it after Lease returned it (see the package doc). The port may be
// leased at the time; it stays leased until released, and is not handed
// out again before the quarantine ends. Quarantining a port again starts
// its period over. reason says why, e.g. the bind error.
func (o *Office) Quarantine(proto needs.Protocol, port int, reason string) (Quarantine, error) {
	if port < 1 || port > MaxPort {
		return Quarantine{}, &needs.FieldError{Field: "port", Msg: fmt.Sprintf("must be in 1..%d, got %d", MaxPort, port)}
	}
	if err := proto.Validate(); err != nil {
		return Quarantine{}, &needs.FieldError{Field: "proto", Msg: err.Error()}
	}
	o.mu.Lock()
	if err := o.writableLocked(); err != nil {
		o.mu.Unlock()
		return Quarantine{}, err
	}
	now := o.now()
	q := o.newQuarantine(proto, port, now, errors.New(reason))
	c := changes{quarantine: []Quarantine{q}}
	o.pruneLocked(now, &c)
	if err := o.awaitLocked(o.submitLocked(&c)); err != nil {
		return Quarantine{}, fmt.Errorf("quarantine %s port %d: %w", proto, port, err)
	}
	o.logQuarantine(c.quarantine)
	return q, nil
}

// Quarantined returns the ports in quarantine now, sorted by protocol then
// port.
func (o *Office) Quarantined() []Quarantine {
	o.mu.Lock()
	now := o.now()
	var qs []Quarantine
	for _, q := range o.quarantine {
		if now.Before(q.Until) {
			qs = append(qs, q)
		}
	}
	o.mu.Unlock()
	slices.SortFunc(qs, func(a, b Quarantine) int {
		if c := compareProto(a.Proto, b.Proto); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return qs
}

func (o *Office) newQuarantine(p needs.Protocol, port int, now time.Time, why error) Quarantine {
	return Quarantine{Proto: p, Port: port, Since: now, Until: now.Add(o.qperiod), Reason: why.Error()}
}

// isInUse reports whether a bind check failed because another socket holds
// the port. Other failures (an address that is gone, a privileged port) say
// nothing about the port and do not quarantine it.
func isInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

// checkFreedLocked runs the bind check on each port of ls that is not in
// quarantine and that no other call is checking, with o.mu released. The
// ports stay leased meanwhile, so no Lease checks them too, and are marked
// in o.probing. It is called and returns with o.mu held, and returns the
// results by port.
func (o *Office) checkFreedLocked(ls []Lease, now time.Time) map[int]error {
	var ports []int
	for _, l := range ls {
		if !o.inQuarantineLocked(l.Port, now) && !o.probing.has(l.Port) {
			o.probing.add(l.Port)
			ports = append(ports, l.Port)
		}
	}
	if len(ports) == 0 {
		return nil
	}
	o.mu.Unlock()
	checked := make(map[int]error, len(ports))
	for _, port := range ports {
		checked[port] = o.probe(o.host, port)
	}
	o.mu.Lock()
	for _, port := range ports {
		o.probing.remove(port)
	}
	return checked
}

// quarantineFreedLocked adds to c.quarantine each port of c.drop that is
// not in quarantine already and that another process holds (EADDRINUSE),
// by its result in checked or, for a port without one, a bind check made
// now. A port another call is checking right now is skipped: two checks of
// one port at once would see each other.
func (o *Office) quarantineFreedLocked(now time.Time, c *changes, checked map[int]error) {
	for _, l := range c.drop {
		if o.inQuarantineLocked(l.Port, now) {
			continue
		}
		err, ok := checked[l.Port]
		if !ok {
			if o.probing.has(l.Port) {
				continue
			}
			err = o.probe(o.host, l.Port)
		}
		if isInUse(err) {
			c.quarantine = append(c.quarantine, o.newQuarantine(l.Proto, l.Port, now, err))
		}
	}
}

// inQuarantineLocked reports whether port is in quarantine at now.
func (o *Office) inQuarantineLocked(port int, now time.Time) bool {
	q, ok := o.quarantine[port]
	return ok && now.Before(q.Until)
}

// pruneLocked adds every entry whose quarantine has ended to c.expired.
func (o *Office) pruneLocked(now time.Time, c *changes) {
	for port, q := range o.quarantine {
		if !now.Before(q.Until) {
			c.expired = append(c.expired, port)
		}
	}
}

// quarantinedInLocked counts the ports of r in quarantine now that nobody
// leases (a leased one is counted as leased).
func (o *Office) quarantinedInLocked(r Range, now time.Time) int {
	n := 0
	for port, q := range o.quarantine {
		if r.Contains(port) && now.Before(q.Until) && !o.taken.has(port) {
			n++
		}
	}
	return n
}

func (o *Office) logQuarantine(qs []Quarantine) {
	for _, q := range qs {
		o.log.Warn("port quarantined", "proto", q.Proto, "port", q.Port,
			"until", q.Until.UTC().Format(time.RFC3339), "reason", q.Reason)
	}
}
