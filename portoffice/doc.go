// Package portoffice leases TCP ports to the children of one master and
// remembers the leases across restarts.
//
// # Basics
//
// An [Office] is opened on a bbolt file with one port [Range] per protocol
// (tcp, http, ws; see [needs.Protocol]). The ranges must not overlap; see
// [ValidateRanges]. [Office.Lease] gives an owner (an allocation id) one port
// per protocol it asks for, all or nothing: for each protocol the lowest port
// of its range that nobody holds and that can be bound on [Options.Host] right
// now. Leasing again for an owner that already holds a port of a protocol
// returns the same port. [Office.Release] gives an owner's ports back, and
// [Office.Reclaim] releases, at start-up, the leases of owners that are gone.
// [Office.Free] counts the ports of a range nobody holds and that are not in
// quarantine, for bids.
//
// Every write is one bbolt transaction, committed before the call returns, so
// a lease survives a crash as soon as Lease has returned (unless
// [Options.NoSync] is set). The file is the truth at [Open]; after that the
// Office keeps an in-memory index in step with it and reads never touch the
// file.
//
// All methods of an Office may be called concurrently.
//
// # Quarantine
//
// A port that turns out to be taken by a process berth does not know about
// is put in quarantine for [Options.Quarantine] (60 s by default,
// [DefaultQuarantine]) and Lease does not hand it out, nor probe it, until
// then. A port goes into quarantine when:
//
//   - Lease's bind check on it fails with EADDRINUSE (another socket holds
//     it);
//   - Release or Reclaim frees it and the same check, made right away,
//     fails: its child is gone, so someone else holds it;
//   - a caller says so with [Office.Quarantine], for example a master that
//     binds the ports of a socket-activated child after Lease and finds one
//     taken in between.
//
// Other bind failures (an address that went away, a privileged port) count
// as unbindable for this call only. Each new entry is logged at Warn with
// the port, the protocol, the end of the quarantine and the bind error.
// [Office.Quarantined] lists the entries. When every free port of a range is
// in quarantine, Lease fails at once with an [*ExhaustedError] saying how
// many are in quarantine and until when; it does not retry or wait, so a
// caller that retries on a timer (the lanmanager's back-off) does no work
// per port until the first quarantine ends. An ended entry is ignored and
// deleted by the next write; the port is probed again before it is leased.
//
// Quarantine is kept on disk, so it survives a master restart. The end is
// stored as wall-clock time; within one run it is compared on the monotonic
// clock, so a wall-clock jump neither ends nor stretches it, and at [Open]
// an end further away than one period (the clock went back) is brought down
// to one period from now.
//
// # On-disk format
//
// The schema version is stored raw, as the ASCII bytes "1". Ports are keyed
// by their 2-byte big-endian value, so a cursor walks them in port order.
//
//	meta/
//	    schema = "1"
//	leases/
//	    tcp/
//	        0x3e80 (16000) = {"owner":"a1b2","since":"2025-01-02T15:04:05.999999999Z"}
//	    http/
//	        0x4268 (17000) = {"owner":"a1b2","since":"..."}
//	    ws/
//	        ...
//	quarantine/
//	    0x4269 (17001) = {"proto":"http","since":"...","until":"2025-01-02T15:05:05.999999999Z",
//	                      "reason":"listen tcp 127.0.0.1:17001: bind: address already in use"}
//
// [Open] refuses a file whose schema version is not "1" with [ErrSchema].
// A port is held by at most one owner across all protocols. The quarantine
// bucket was added without a new schema version: an older berth ignores it
// (and so leases no port it would not have leased anyway), and Open creates
// it in a file that lacks it. A quarantined port may also be leased, when
// the caller quarantined a port it holds.
//
// # Caveats
//
// The bind check is advisory: a port that binds during Lease may be taken by
// another process before the child binds it, and a port leased to a child
// that has not bound it yet is invisible to other programs. Socket
// activation, where the master binds the port itself right after Lease,
// closes that window (see package master).
//
// The check after Release runs as soon as the owner's child is gone. A
// process of that child that is still dying, or that escaped its process
// group with the socket, makes the port look taken by an outsider: it is
// quarantined too, which costs one port for one period.
//
// Ranges may change between runs. Leases outside their protocol's current
// range are kept, because they belong to children that may still run, and
// can be released as usual; their ports are not handed out again until they
// are back in a range. A port stays held whatever range it falls in now: a
// tcp lease on a port of today's http range keeps it from http owners and
// counts against http in [Office.Free].
//
// Only one process may open the file at a time: a second [Open] waits
// [Options.Timeout] for the file lock and then fails with [ErrLocked].
package portoffice
