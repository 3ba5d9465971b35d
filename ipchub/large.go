package ipchub

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// largeMsg is a message POSTed to /send, waiting to be fetched once by each
// of its recipients.
type largeMsg struct {
	group   string
	data    []byte
	pending map[string]bool // recipient ids that have not fetched it yet
	expires time.Time
}

// largeStore keeps large messages until every recipient fetched them or
// they expire. It is bounded in count and bytes. The Server's mu guards it.
type largeStore struct {
	msgs  map[string]*largeMsg
	bytes int
}

// newMsgID returns 32 random hex characters.
func newMsgID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// purgeLocked drops the expired messages.
func (st *largeStore) purgeLocked(now time.Time) {
	for id, m := range st.msgs {
		if !now.Before(m.expires) {
			st.deleteLocked(id)
		}
	}
}

func (st *largeStore) deleteLocked(id string) {
	if m, ok := st.msgs[id]; ok {
		st.bytes -= len(m.data)
		delete(st.msgs, id)
	}
}

// fetchLocked returns the message id for recipient peer of group and marks
// it fetched; ok is false when there is none (unknown, expired, fetched, or
// not addressed to peer).
func (st *largeStore) fetchLocked(now time.Time, group, id, peer string) (data []byte, ok bool) {
	m := st.msgs[id]
	if m == nil || m.group != group || !m.pending[peer] {
		return nil, false
	}
	if !now.Before(m.expires) {
		st.deleteLocked(id)
		return nil, false
	}
	delete(m.pending, peer)
	if len(m.pending) == 0 {
		st.deleteLocked(id)
	}
	return m.data, true
}
