package portoffice

import (
	"errors"
	"fmt"

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
	// Leased counts the ports of Range held by any owner.
	Leased int
	// Unbindable counts the unleased ports of Range that failed the bind
	// check; BindErr is the last of those failures.
	Unbindable int
	BindErr    error
}

func (e *ExhaustedError) Error() string {
	s := fmt.Sprintf("%s range %s exhausted (%d leased, 0 bindable", e.Proto, e.Range, e.Leased)
	if e.Unbindable > 0 {
		s += fmt.Sprintf("; %d failed to bind, last: %v", e.Unbindable, e.BindErr)
	}
	return s + ")"
}

// Unwrap returns ErrExhausted.
func (e *ExhaustedError) Unwrap() error { return ErrExhausted }
