package needs

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as a Go duration
// string ("250ms", "30s") in JSON. A bare whole number is taken as
// milliseconds.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or a whole number of milliseconds.
// A bad value is reported as a *json.UnmarshalTypeError, so that a decoder
// names the field it was found in (for example "restart.delay").
func (d *Duration) UnmarshalJSON(b []byte) error {
	bad := func(why string) error {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("%s (%s)", b, why), Type: reflect.TypeFor[Duration]()}
	}
	if string(b) == "null" {
		return nil // as encoding/json does for a plain number
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return bad(strings.TrimPrefix(err.Error(), "time: "))
		}
		*d = Duration(v)
		return nil
	}
	var ms int64
	if err := json.Unmarshal(b, &ms); err != nil {
		return bad(`want a string such as "250ms" or a whole number of milliseconds`)
	}
	if ms > math.MaxInt64/int64(time.Millisecond) || ms < math.MinInt64/int64(time.Millisecond) {
		return bad("out of range")
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}

// RestartPolicy says how an instance that fails is started again. The zero
// value of each field means its default.
type RestartPolicy struct {
	// LocalAttempts is how many consecutive failures are retried on the
	// same master before placement prefers another one (default 0: move at
	// once when another master can take it).
	LocalAttempts int `json:"local_attempts,omitempty"`
	// Delay is the first back-off delay (default 100 ms).
	Delay Duration `json:"delay,omitempty"`
	// MaxDelay caps the back-off (default 30 s).
	MaxDelay Duration `json:"max_delay,omitempty"`
	// Factor multiplies the delay after each failure (default 2, 1 to 10).
	Factor float64 `json:"factor,omitempty"`
	// ResetAfter is the uptime after which an instance counts as stable and
	// its failure count starts over (default 30 s).
	ResetAfter Duration `json:"reset_after,omitempty"`
}

// Restart policy bounds.
const (
	MaxLocalAttempts = 100
	MaxRestartDelay  = 24 * time.Hour
)

// Validate checks every field of p, naming the first bad one.
func (p *RestartPolicy) Validate() error {
	if p == nil {
		return nil
	}
	if p.LocalAttempts < 0 || p.LocalAttempts > MaxLocalAttempts {
		return &FieldError{Field: "restart.local_attempts", Msg: fmt.Sprintf("must be 0-%d, got %d", MaxLocalAttempts, p.LocalAttempts)}
	}
	for _, f := range []struct {
		name string
		d    Duration
	}{{"restart.delay", p.Delay}, {"restart.max_delay", p.MaxDelay}, {"restart.reset_after", p.ResetAfter}} {
		if f.d < 0 || time.Duration(f.d) > MaxRestartDelay {
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("must be between 0 and %s, got %s", MaxRestartDelay, time.Duration(f.d))}
		}
	}
	if p.Factor != 0 && !(p.Factor >= 1 && p.Factor <= 10) { // NaN fails too
		return &FieldError{Field: "restart.factor", Msg: fmt.Sprintf("must be between 1 and 10, got %g", p.Factor)}
	}
	if e := p.Effective(); p.MaxDelay != 0 && p.MaxDelay < e.Delay {
		return &FieldError{Field: "restart.max_delay", Msg: fmt.Sprintf("%s is less than restart.delay %s", time.Duration(p.MaxDelay), time.Duration(e.Delay))}
	}
	return nil
}

// Effective returns p with every default filled in; p may be nil.
func (p *RestartPolicy) Effective() RestartPolicy {
	var e RestartPolicy
	if p != nil {
		e = *p
	}
	if e.Delay == 0 {
		e.Delay = Duration(BackoffMin)
	}
	if e.MaxDelay == 0 {
		e.MaxDelay = Duration(max(BackoffMax, time.Duration(e.Delay)))
	}
	if e.Factor == 0 {
		e.Factor = 2
	}
	if e.ResetAfter == 0 {
		e.ResetAfter = Duration(StableAfter)
	}
	return e
}

// Backoff returns the delay before the next attempt after `failures`
// consecutive failures: Delay × Factor^(failures-1), capped at MaxDelay.
func (p *RestartPolicy) Backoff(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	e := p.Effective()
	d := float64(e.Delay) * math.Pow(e.Factor, float64(failures-1))
	if d >= float64(e.MaxDelay) || math.IsNaN(d) {
		return time.Duration(e.MaxDelay)
	}
	return time.Duration(d)
}
