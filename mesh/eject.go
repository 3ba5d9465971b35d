package mesh

import "time"

// Ejection defaults: the first refusal ejects a backend for EjectBase, each
// refusal after the ejection ends doubles it, up to EjectMax; a connection
// that succeeds resets it.
const (
	DefaultEjectBase = time.Second
	DefaultEjectMax  = 30 * time.Second
)

// ejection is a backend's passive health. Its owner serialises access.
type ejection struct {
	strikes int       // refusals in a row
	until   time.Time // ejected before this instant
}

// ejected reports whether the backend is out at now.
func (e *ejection) ejected(now time.Time) bool { return now.Before(e.until) }

// refused records a failed dial at now and returns how long the backend is
// out: base << (strikes-1), at most max. A refusal while ejected (a dial
// that started before the ejection) does not add a strike.
func (e *ejection) refused(now time.Time, base, max time.Duration) time.Duration {
	if e.ejected(now) {
		return e.until.Sub(now)
	}
	e.strikes++
	d := base
	for i := 1; i < e.strikes && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	e.until = now.Add(d)
	return d
}

// succeeded records a dial that worked: the next refusal starts from base.
func (e *ejection) succeeded() {
	e.strikes = 0
	e.until = time.Time{}
}
