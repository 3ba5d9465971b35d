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
// [Office.Free] counts the ports of a range nobody holds, for bids.
//
// Every write is one bbolt transaction, committed before the call returns, so
// a lease survives a crash as soon as Lease has returned (unless
// [Options.NoSync] is set). The file is the truth at [Open]; after that the
// Office keeps an in-memory index in step with it and reads never touch the
// file.
//
// All methods of an Office may be called concurrently.
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
//
// [Open] refuses a file whose schema version is not "1" with [ErrSchema].
// A port is held by at most one owner across all protocols.
//
// # Caveats
//
// The bind check is advisory: a port that binds during Lease may be taken by
// another process before the child binds it, and a port leased to a child
// that has not bound it yet is invisible to other programs.
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
