package child

import "errors"

var (
	// ErrNoPipe means BERTH_PIPE is not set: the program was not started by
	// a berth master, or the master gave it no control socket. A child that
	// gets it from Open should carry on without the pipe.
	ErrNoPipe = errors.New("no berth pipe (BERTH_PIPE is not set)")

	// ErrDisconnected is wrapped by Ready and SendStats while the pipe is
	// down and the Conn is reconnecting. Callers may ignore it: the Conn
	// says hello again on the new connection, and ready if Ready was called.
	ErrDisconnected = errors.New("berth pipe disconnected")

	// ErrClosed is returned by a Conn's methods after Close.
	ErrClosed = errors.New("berth pipe closed")
)
