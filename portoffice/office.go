package portoffice

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"berth/boltfile"
	"berth/needs"
)

// DefaultTimeout is how long Open waits for the file lock by default.
const DefaultTimeout = 2 * time.Second

// DefaultQuarantine is how long a port taken by an outside process is kept
// out of leases by default.
const DefaultQuarantine = 60 * time.Second

// Options configure an Office.
type Options struct {
	// Ranges gives each protocol its ports; at least one is required.
	Ranges map[needs.Protocol]Range
	// Host is the IP address the bind check listens on, e.g.
	// "127.0.0.1"; "" means all IPv4 interfaces (0.0.0.0).
	Host string
	// NoSync skips the fsync after each write (bbolt NoSync): faster, but
	// a crash may lose recent leases. For tests and benchmarks.
	NoSync bool
	// Timeout is how long Open waits for the file lock; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Probe, if non-nil, replaces the bind check. It returns nil if port
	// is free to bind on host right now, and an error that matches
	// syscall.EADDRINUSE if another process holds it.
	Probe func(host string, port int) error
	// Quarantine is how long a port found taken by an outside process is
	// kept out of leases; 0 means DefaultQuarantine.
	Quarantine time.Duration
	// Now, if non-nil, replaces time.Now; for tests.
	Now func() time.Time
}

// Office leases the ports of one machine. All methods are safe for
// concurrent use; concurrent writes share transactions (see the package
// doc, Group commit).
type Office struct {
	ranges  map[needs.Protocol]Range // read-only after Open
	host    string
	probe   func(host string, port int) error
	qperiod time.Duration
	now     func() time.Time
	log     *slog.Logger

	// Once Open has returned, db is written only by the committer
	// goroutine (commit.go), read back under mu after a failed write, and
	// closed by Close once the committer has stopped; stopped is closed
	// when it has.
	db        *bolt.DB
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex // Protects following.
	// more wakes the committer: signalled when a write ends with a batch
	// queued, and by Close. Its L is &mu.
	more    sync.Cond
	closed  bool
	broken  error  // why writes are refused after a failed write could not be undone
	next    *batch // changes applied in memory, queued for the next commit
	writing bool   // the committer is writing a batch taken from next
	// The in-memory index below already holds the changes of next and of
	// the batch being written.
	taken portSet // every leased port, any protocol
	// probing marks the ports a call is running the bind check on with mu
	// released: Lease's candidates and Release's freed ports.
	probing portSet
	leases  map[int]Lease                     // by port; mirrors the leases bucket
	owners  map[string]map[needs.Protocol]int // owner -> proto -> port
	// quarantine mirrors the quarantine bucket. An entry whose Until has
	// passed is dead: it is ignored, and deleted by the next write.
	quarantine map[int]Quarantine
}

// Open opens or creates the office file at path and loads its leases.
// A second Open of the same file, from any process, fails with ErrLocked
// after opts.Timeout.
func Open(path string, opts Options) (*Office, error) {
	if err := ValidateRanges(opts.Ranges); err != nil {
		return nil, fmt.Errorf("open port office %s: %w", path, err)
	}
	o := &Office{
		ranges:     maps.Clone(opts.Ranges),
		host:       opts.Host,
		probe:      opts.Probe,
		qperiod:    opts.Quarantine,
		now:        opts.Now,
		log:        opts.Logger,
		leases:     make(map[int]Lease),
		owners:     make(map[string]map[needs.Protocol]int),
		quarantine: make(map[int]Quarantine),
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.qperiod <= 0 {
		o.qperiod = DefaultQuarantine
	}
	if o.now == nil {
		o.now = time.Now
	}
	o.log = o.log.With("db", path)
	if o.probe == nil {
		o.probe = bindProbe
		// A wrong Host would make every range look exhausted; say so now.
		if err := bindProbe(o.host, 0); err != nil {
			return nil, fmt.Errorf("open port office %s: host %q: %w", path, o.host, err)
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open port office %s: %w (waited %s): %w", path, ErrLocked, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open port office %s: %w", path, err)
	}
	o.db = db
	if err := db.Update(o.loadLocked); err != nil {
		db.Close()
		return nil, fmt.Errorf("open port office %s: %w", path, err)
	}
	for _, l := range o.leases {
		if r, ok := o.ranges[l.Proto]; !ok || !r.Contains(l.Port) {
			o.log.Info("lease outside configured ranges kept until released",
				"proto", l.Proto, "port", l.Port, "owner", l.Owner)
		}
	}
	o.more.L = &o.mu
	o.stopped = make(chan struct{})
	go o.commitLoop()
	return o, nil
}

// Close waits for the writes already accepted to be committed, stops the
// committer and closes the file. It is safe to call more than once; a
// second call waits for the first to finish and returns nil. Afterwards the
// read methods report the leases as they were at Close and the others
// return ErrClosed.
func (o *Office) Close() error {
	first := false
	o.closeOnce.Do(func() {
		first = true
		o.mu.Lock()
		o.closed = true
		o.more.Signal()
		o.mu.Unlock()
		<-o.stopped
		o.closeErr = o.db.Close()
	})
	if !first {
		return nil
	}
	return o.closeErr
}

// writableLocked returns why a write cannot be made, or nil.
func (o *Office) writableLocked() error {
	if o.closed {
		return ErrClosed
	}
	return o.broken
}

// Ranges returns a copy of the configured ranges.
func (o *Office) Ranges() map[needs.Protocol]Range { return maps.Clone(o.ranges) }

// Free returns how many ports of p's range nobody holds and are not in
// quarantine, without a bind check; 0 if p has no range.
func (o *Office) Free(p needs.Protocol) int {
	r, ok := o.ranges[p]
	if !ok {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return r.Size - o.taken.count(r.Start, r.End()) - o.quarantinedInLocked(r, o.now())
}

// Owned returns the ports owner holds, or nil if none.
func (o *Office) Owned(owner string) map[needs.Protocol]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.owners[owner])
}
