// Package master is the per-machine agent. It links to the lanmanager over
// WebSocket, bids for unsatisfied instances it can serve, leases their
// ports from its [portoffice.Office], spawns each child through [spawn]
// with a control socket (package pipes), reports it, and reports its exit.
//
// # Basics
//
// [LoadConfig] reads masterconfig.json (creating it with defaults when
// missing). [Open] prepares the runtime directory, stops any children a
// crashed predecessor left behind (matching pid and /proc start time),
// reclaims port leases nobody holds, opens the control socket and starts
// the link. [Agent.Close] stops every child and releases its ports.
//
// # Runtime directory
//
//	master.id          stable id of this master (the lanmanager knows it by this, never by IP)
//	master.db          bbolt: bucket "children", alloc id → pid, start time, ports, pipe, log
//	ports.db           bbolt: the port office's leases
//	logs/<inst>.log    each child's stdout and stderr
//	sock/master.sock   control socket (`master ps`), mode 0600
//	sock/<alloc>.sock  each child's control socket (BERTH_PIPE), mode 0600
//
// The sock directory is 0700. When its paths would pass the kernel's
// 108-byte limit it moves to the system temp directory (see [SocketDir]).
//
// # Caveats
//
// While the link is down children keep running; messages that could not be
// sent are recovered by the hello that follows the reconnection, which
// lists every running child.
//
// Lock order: Agent.mu, then child.mu (see LOCKS.md).
package master
