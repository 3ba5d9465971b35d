package portoffice

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// batch is the changes of the calls that share one transaction.
type batch struct {
	changes []*changes // in the order the calls made them
	done    chan struct{}
	err     error // set before done is closed
}

// wait returns once b is durable, with nil, or has failed, with why. A nil
// batch has nothing to wait for.
func (b *batch) wait() error {
	if b == nil {
		return nil
	}
	<-b.done
	return b.err
}

func (b *batch) finish(err error) {
	b.err = err
	close(b.done)
}

// submitLocked makes c in the in-memory index and queues it for the next
// commit. It returns the batch the caller must wait for, with awaitLocked,
// before it acts on the index as it now stands (hands out a port, reports
// a release), or nil when there is nothing to wait for: c is empty and
// every change the index holds is durable. An empty c still waits while
// earlier changes are queued or being written, since what the caller read
// may be one of them.
func (o *Office) submitLocked(c *changes) *batch {
	if c.empty() && o.next == nil && !o.writing {
		return nil
	}
	o.applyLocked(c)
	if o.next == nil {
		o.next = &batch{done: make(chan struct{})}
	}
	if !c.empty() {
		o.next.changes = append(o.next.changes, c)
	}
	return o.next
}

// awaitLocked unlocks o.mu and returns once b is durable, with nil, or has
// failed, with why. If b is queued and nothing is being written, the
// caller writes it itself: a lone call then costs no switch to the
// committer and back.
func (o *Office) awaitLocked(b *batch) error {
	if b != nil && b == o.next && !o.writing {
		o.next, o.writing = nil, true
		o.mu.Unlock()
		o.commit(b)
		return b.err
	}
	o.mu.Unlock()
	return b.wait()
}

// commitLoop is the committer: it writes the batch that queued up while
// another was being written. It returns once Close has been called and
// nothing is queued or being written.
func (o *Office) commitLoop() {
	defer close(o.stopped)
	for {
		o.mu.Lock()
		for o.next == nil || o.writing {
			if o.closed && o.next == nil && !o.writing {
				o.mu.Unlock()
				return
			}
			o.more.Wait()
		}
		b := o.next
		o.next, o.writing = nil, true
		o.mu.Unlock()
		o.commit(b)
	}
}

// commit writes b, taken from o.next by the caller, in one transaction
// without the lock, hands what queued up meanwhile to the committer, and
// reports to b's callers.
func (o *Office) commit(b *batch) {
	err := o.write(b)
	o.mu.Lock()
	o.writing = false
	if err != nil {
		o.undoLocked(err)
	}
	if o.next != nil || o.closed {
		o.more.Signal()
	}
	o.mu.Unlock()
	b.finish(err)
}

// write writes every change of b in one transaction.
func (o *Office) write(b *batch) error {
	if len(b.changes) == 0 {
		return nil
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, c := range b.changes {
			if err := writeChanges(tx, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// undoLocked follows a failed write: the in-memory index, which holds that
// write's changes and those queued after it, is read back from the file,
// and the queued calls fail too, since they were made on top of the failed
// ones. If the file cannot be read, the Office refuses every later write.
func (o *Office) undoLocked(err error) {
	if rerr := o.reloadLocked(); rerr != nil {
		o.broken = fmt.Errorf("port office unusable: a write failed (%w) and reading the file back failed: %w", err, rerr)
		o.log.Error("reload after failed write", "err", o.broken)
	}
	if n := o.next; n != nil {
		o.next = nil
		n.finish(fmt.Errorf("an earlier write this one built on failed: %w", err))
	}
}
