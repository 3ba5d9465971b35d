package pipes

import (
	"errors"
	"fmt"

	"berth/needs"
)

var (
	// ErrFrameTooLarge means a frame's length exceeds the connection's limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrBadFrame means a frame is not a valid envelope.
	ErrBadFrame = errors.New("bad frame")
	// ErrUnsupported means a version or message type this peer does not speak.
	ErrUnsupported = errors.New("unsupported")
	// ErrExhausted means a resource (a port range) has nothing left.
	ErrExhausted = errors.New("exhausted")
	// ErrStale means a report names an allocation that is no longer current.
	ErrStale = errors.New("stale allocation")
	// ErrInternal is an unexpected failure on the other side.
	ErrInternal = errors.New("internal error")
	// ErrSocketInUse means a live listener already owns a socket path.
	ErrSocketInUse = errors.New("socket in use")
	// ErrPathTooLong means a socket path exceeds MaxSocketPath.
	ErrPathTooLong = errors.New("socket path too long")
	// ErrUnsafeDir means a socket's directory could let another user
	// replace the socket: it is a symbolic link or not a directory, is not
	// owned by this process's user, or group or others may write to it.
	ErrUnsafeDir = errors.New("socket directory not safe")
)

// Code is a wire error code. The list is append-only.
type Code string

// Wire error codes.
const (
	CodeInvalid      Code = "invalid"
	CodeNotFound     Code = "not_found"
	CodeExists       Code = "exists"
	CodeUnauthorized Code = "unauthorized"
	CodeInternal     Code = "internal"
	CodeUnsupported  Code = "unsupported"
	CodeExhausted    Code = "exhausted"
	CodeStale        Code = "stale"
)

// codes maps each code to the sentinel it stands for.
var codes = []struct {
	code Code
	err  error
}{
	{CodeInvalid, needs.ErrInvalid},
	{CodeNotFound, needs.ErrNotFound},
	{CodeExists, needs.ErrExists},
	{CodeUnauthorized, needs.ErrUnauthorized},
	{CodeInternal, ErrInternal},
	{CodeUnsupported, ErrUnsupported},
	{CodeExhausted, ErrExhausted},
	{CodeStale, ErrStale},
}

// Codes returns every known code.
func Codes() []Code {
	out := make([]Code, len(codes))
	for i, c := range codes {
		out[i] = c.code
	}
	return out
}

// Validate reports whether c is a known code.
func (c Code) Validate() error {
	for _, k := range codes {
		if k.code == c {
			return nil
		}
	}
	return fmt.Errorf("%w: unknown error code %q", ErrBadFrame, string(c))
}

// Error is an error that crossed a connection.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel of e's code, so errors.Is works across the wire.
func (e *Error) Unwrap() error {
	for _, k := range codes {
		if k.code == e.Code {
			return k.err
		}
	}
	return ErrInternal
}

// ErrorFrom turns err into a wire error, choosing the code from the first
// sentinel it matches.
func ErrorFrom(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	for _, k := range codes {
		if errors.Is(err, k.err) {
			return &Error{Code: k.code, Message: err.Error()}
		}
	}
	if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
		return &Error{Code: CodeInvalid, Message: err.Error()}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
