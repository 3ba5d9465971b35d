package portoffice

import (
	"errors"
	"fmt"
	"time"

	"berth/needs"
)

// Errors returned by Open.
var (
	// ErrLocked means another process holds the office file open.
	ErrLocked = errors.New("port office file is locked by another process")
	// ErrSchema means the office file was written with an unknown schema
	// version.
	ErrSchema = errors.New("unknown port office schema version")
)

// Errors returned by Lease, Release and Reclaim.
var (
	// ErrExhausted means a protocol's range has no port that is both unleased
	// and bindable. The error is an *ExhaustedError.
	ErrExhausted = errors.New("port range exhausted")
	// ErrNoRange means a protocol was asked for that has no configured range.
	ErrNoRange = errors.New("protocol has no port range")
	// ErrClosed means the Office has been closed.
	ErrClosed = errors.New("port office closed")
)

// ExhaustedError says which range ran out and why. It matches ErrExhausted.
type ExhaustedError struct {
	Proto needs.Protocol
	Range Range
	// Leased counts the ports of Range held by any owner, or being
	// checked for a concurrent Lease.
	Leased int
	// Quarantined counts the unleased ports of Range that were in
	// quarantine; Until is when the first of them comes out.
	Quarantined int
	Until       time.Time
	// Unbindable counts the unleased ports of Range that failed the bind
	// check; BindErr is the last of those failures.
	Unbindable int
	BindErr    error
}

func (e *ExhaustedError) Error() string {
	s := fmt.Sprintf("%s range %s exhausted (%d leased", e.Proto, e.Range, e.Leased)
	switch until := e.Until.UTC().Format(time.RFC3339); {
	case e.Quarantined == 1:
		s += ", 1 in quarantine until " + until
	case e.Quarantined > 1:
		s += fmt.Sprintf(", %d in quarantine, the first until %s", e.Quarantined, until)
	}
	s += ", 0 bindable"
	if e.Unbindable > 0 {
		s += fmt.Sprintf("; %d failed to bind, last: %v", e.Unbindable, e.BindErr)
	}
	return s + ")"
}

// addQuarantined counts q, which kept its port out of the search.
func (e *ExhaustedError) addQuarantined(q Quarantine) {
	e.Quarantined++
	if e.Until.IsZero() || q.Until.Before(e.Until) {
		e.Until = q.Until
	}
}

// Unwrap returns ErrExhausted.
func (e *ExhaustedError) Unwrap() error { return ErrExhausted }
