// Package driverplugin runs spawn drivers as separate binaries through
// hashicorp/go-plugin over gRPC: the contract between a berth master and
// an external driver. The master imports it (Open, Plugin); a driver
// binary imports it too (Serve, TaskDriver, ProcessDriver). Nothing else
// in berth sees gRPC or go-plugin.
//
// # Finding and starting drivers
//
// A master runs every berth-driver-<name> binary of its plugins directory
// with go-plugin: a handshake on the binary's stdout (the magic cookie
// MagicCookieKey in its environment, ProtocolVersion, and go-plugin's
// AutoMTLS: each side makes a one-time certificate and only the other may
// connect), then gRPC (driverpb/driver.proto) over a Unix socket. A driver
// of another protocol version is refused with ErrProtocolVersion, whose
// message names both versions.
//
// # The protocol
//
// Fingerprint (name, version, available or why not, what it supports),
// Start, Wait, Stop, Signal, Stats and Recover; see driverpb/driver.proto.
// A Plugin implements spawn.Driver on top of it, so the master starts a
// child of an external driver with spawn.Start, as it does with Exec.
// Sockets are not passed: a socket-activated need cannot use an external
// driver (Start refuses it, and masters do not bid for it).
//
// # Faults
//
// A Plugin pings its driver process every PingInterval under PingTimeout.
// A process that exited, or does not answer in time (hung, or stopped with
// SIGSTOP), is sent SIGKILL and a new one is launched, at once and then
// with a back-off doubling from 100 ms to MaxBackoff. Each task is then
// re-attached on the new process (Recover) before it is waited for again,
// so a running task is neither lost nor started twice, and one that
// exited meanwhile is reported once, with an unknown status (its new
// driver is not its parent).
//
// A master that leaves (Detach) keeps the driver process running; the
// ReattachState it persisted (pid and start time, address, and the mTLS
// certificates, which go-plugin cannot reattach with by itself) lets the
// next master re-attach to it and Recover its tasks with their real exit
// status.
//
// # Logging
//
// stdout belongs to the handshake. A driver logs JSON lines to stderr
// (Logger); the master's go-plugin client parses them and logs them
// through the master's slog logger, with driver=<name>, through an hclog
// adapter kept in this package.
//
// # Caveats
//
// A driver process's stderr is a pipe to the master that started it: after
// a master restart its lines are lost (Serve catches SIGPIPE so the
// driver lives on) until the driver process is restarted. A signal for a
// task whose driver is down waits for it up to twice PingTimeout; a SIGTERM
// is then held for the next driver process, and a SIGKILL is sent by the
// host itself to the task's process group (spawn.Adopt from the handle's
// pid and start time), so that a stop always ends.
package driverplugin
