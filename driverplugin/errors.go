package driverplugin

import (
	"context"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/spawn"
)

// Errors of the driver protocol. Those that cross the gRPC boundary are
// carried as a status code (see codeOf and errorOf): a driver returns them,
// the master gets them back, so errors.Is works on both sides.
var (
	// ErrTaskNotFound means the driver has no task of that id: it never
	// started it, or it already reported its exit and forgot it.
	ErrTaskNotFound = errors.New("no such task")
	// ErrBadRequest means the driver refused a request as malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrUnavailable means the driver cannot run tasks here (its
	// fingerprint says why).
	ErrUnavailable = errors.New("driver unavailable on this machine")
	// ErrProtocolVersion means the driver binary speaks another major
	// version of the driver protocol than this master.
	ErrProtocolVersion = errors.New("driver protocol version mismatch")
	// ErrDriverDown means the driver process is not answering (crashed,
	// hung, or being restarted); the master restarts it with back-off.
	ErrDriverDown = errors.New("driver process not answering")
	// ErrTaskLost is the Exit.Err of a task the restarted driver could not
	// re-attach to: it may still run; the master stops what it can find.
	ErrTaskLost = errors.New("task lost by its driver")
	// ErrClosed is returned by a Plugin after Close or Detach.
	ErrClosed = errors.New("driver plugin closed")
)

// codes maps sentinels to gRPC status codes and back. Append only.
var errCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrTaskNotFound, codes.NotFound},
	{ErrBadRequest, codes.InvalidArgument},
	{ErrUnavailable, codes.FailedPrecondition},
	{os.ErrProcessDone, codes.OutOfRange},
	{spawn.ErrGone, codes.Aborted},
}

// toStatus turns an error of a TaskDriver into the gRPC error sent back.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range errCodes {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// remoteError is an error a driver returned: its message, and the
// sentinel its code stands for, if any.
type remoteError struct {
	driver string
	msg    string
	kind   error
}

func (e *remoteError) Error() string { return "driver " + e.driver + ": " + e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// errorOf turns a gRPC error from driver name into an error that wraps the
// matching sentinel: a transport failure (the process gone or hung) wraps
// ErrDriverDown.
func errorOf(name string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("driver %s: %w: %w", name, ErrDriverDown, err)
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
		return fmt.Errorf("driver %s: %w: %s", name, ErrDriverDown, st.Message())
	}
	for _, e := range errCodes {
		if st.Code() == e.code {
			return &remoteError{driver: name, msg: st.Message(), kind: e.err}
		}
	}
	return &remoteError{driver: name, msg: st.Message()}
}
