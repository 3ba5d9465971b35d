package mesh

import (
	"errors"
	"fmt"
)

// Errors of the proxy.
var (
	// ErrClosed is returned by Serve and Listen once the proxy is closed.
	ErrClosed = errors.New("mesh: proxy closed")

	// ErrNoBackend is the reason a connection was closed when no running,
	// reachable backend was left to take it.
	ErrNoBackend = errors.New("mesh: no backend")
)

// Errors of parsing.
var (
	// ErrUnknownBalance is wrapped by ParseBalance for a name it does not
	// know.
	ErrUnknownBalance = errors.New("unknown balance")

	// ErrBadWeights is wrapped by ParseWeights for a malformed list.
	ErrBadWeights = errors.New("bad weights")
)

// ParseError names the value that could not be parsed and why.
type ParseError struct {
	Value string // the whole input
	Bad   string // the part that is wrong (may equal Value)
	Err   error  // ErrUnknownBalance or ErrBadWeights
	Why   string // more detail, or empty
}

func (e *ParseError) Error() string {
	msg := fmt.Sprintf("%v %q", e.Err, e.Bad)
	if e.Bad != e.Value {
		msg += fmt.Sprintf(" in %q", e.Value)
	}
	if e.Why != "" {
		msg += ": " + e.Why
	}
	return msg
}

func (e *ParseError) Unwrap() error { return e.Err }
