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

// Errors of the IPC client.
var (
	// ErrNoIPC means BERTH_IPC is not set (nor BERTH_IPC_HOST and
	// BERTH_IPC_PORT): the lanmanager serves no IPC hub, or the program was
	// not started by berth.
	ErrNoIPC = errors.New("no berth IPC hub (BERTH_IPC is not set)")

	// ErrIPCDisconnected is wrapped by Send and Broadcast while the client
	// has no connection to the hub and is reconnecting. The message was
	// not sent; the caller may retry, or wait with IPC.WaitConnected.
	ErrIPCDisconnected = errors.New("berth ipc disconnected")

	// ErrIPCClosed is returned by an IPC's methods after Close.
	ErrIPCClosed = errors.New("berth ipc closed")

	// ErrNoPong is given to OnDisconnect when the hub did not answer a
	// ping within IPCOptions.PongTimeout and the client dropped the
	// connection.
	ErrNoPong = errors.New("berth ipc: no answer to ping")
)
