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
// Every write is committed before the call returns, so a lease survives a
// crash as soon as Lease has returned (unless [Options.NoSync] is set):
// no caller gets a port before the transaction holding its lease is
// durable. Concurrent writes share transactions; see Group commit. The
// file is the truth at [Open]; after that the Office keeps an in-memory
// index in step with it and reads never touch the file.
//
// All methods of an Office may be called concurrently.
//
// # Group commit
//
// Lease, Release, Reclaim and Quarantine decide their changes under the
// Office's lock, against the in-memory index, make them there at once and
// queue them. Everything queued is written in one bbolt transaction (one
// fsync), without the lock: by the call itself if nothing is being written
// (a lone call costs no switch between goroutines), else by the committer
// goroutine, started by [Open] and stopped by [Office.Close], as soon as
// the write in progress ends; the calls that arrive meanwhile queue up for
// the next transaction. Each call waits until the transaction holding its
// changes is committed, and a call that changed nothing but read the index
// (Lease for an owner that already holds its ports) waits until everything
// queued before it is, since what it read may be among it. There is no
// timer: the batch grows with the load (a transaction costs about 230 µs
// plus about 1.3 µs per lease here).
//
// The bind checks run without the lock: Lease marks a candidate port as
// being checked (so no other call picks or checks it), checks it, and
// takes the lock again to lease it; Release does the same for the ports it
// frees, which stay leased until then. A candidate another call is
// checking is skipped and counted as leased in an [*ExhaustedError].
//
// When a transaction fails (a full disk, say), the index is read back from
// the file, its callers get the error, and so do the calls queued behind
// it, which were decided on top of it; if the file cannot be read back,
// every later write fails. Reads ([Office.Leases], [Office.Owned],
// [Office.Free], [Office.Quarantined]) see the changes of calls still
// waiting for their transaction. Close lets the queued writes finish
// before it closes the file.
//
// Measured with BenchmarkLeaseConcurrent (each leaser leases one http port
// with the real bind check and releases it, fsync on, 2 cores; see
// docs/figures.md): 32 leasers get 24,300–24,800 leases/s with p99
// 1.55–1.64 ms (before: 1,660–1,930/s, p99 16–27 ms), 128 get
// 45,000–56,000/s with p99 2.9–3.3 ms, and a lone caller is as fast as
// before (about 245 µs, mostly fsync).
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
