package child

import (
	"encoding/json"
	"fmt"
	"os"

	"berth/pipes"
)

// EventType names a lifecycle event of the child's upstreams and peers:
// the event set of @kumori/tcp-proxy.
type EventType string

// The lifecycle events, from the master's mesh.* messages (see package
// pipes, "Child lifecycle messages").
const (
	// EventReady: the upstream listeners are open (after each connection
	// of the pipe). State holds the upstreams and peers.
	EventReady EventType = "ready"
	// EventChange: the peers or an upstream's targets changed. State
	// holds the whole new state.
	EventChange EventType = "change"
	// EventError: something does not work, e.g. an upstream whose need
	// has no running instance. Error says what.
	EventError EventType = "error"
	// EventClose: the master is stopping the child. Reason says why.
	EventClose EventType = "close"
)

// Event is one lifecycle event delivered by [Conn.Events].
type Event struct {
	Type   EventType
	State  pipes.MeshState // ready, change
	Error  pipes.MeshError // error
	Reason string          // close
}

// eventQueue is the capacity of Conn.Events.
const eventQueue = 64

// Events delivers the master's lifecycle events in order. When the child
// falls eventQueue (64) events behind, the oldest is dropped to make room
// (a later ready or change holds the whole state anyway) and counted in
// [Conn.DroppedEvents]. The channel is never closed, not even by Close.
func (c *Conn) Events() <-chan Event { return c.events }

// DroppedEvents is how many events were dropped because Events was full.
func (c *Conn) DroppedEvents() uint64 { return c.dropped.Load() }

// MeshState returns the latest state of the child's upstreams and peers
// (from the last ready or change), and false until the first arrived.
func (c *Conn) MeshState() (pipes.MeshState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.meshState == nil {
		return pipes.MeshState{}, false
	}
	return *c.meshState, true
}

// handleMesh decodes a mesh.* message and delivers its event; it reports
// false for a type that is not one.
func (c *Conn) handleMesh(pc *pipes.Conn, m *pipes.Msg) bool {
	var ev Event
	var body any
	switch m.Type {
	case pipes.TypeMeshReady:
		ev.Type, body = EventReady, &ev.State
	case pipes.TypeMeshChange:
		ev.Type, body = EventChange, &ev.State
	case pipes.TypeMeshError:
		ev.Type, body = EventError, &ev.Error
	case pipes.TypeMeshClose:
		ev.Type = EventClose
		var cl pipes.MeshClose
		if len(m.Body) > 0 {
			if err := m.Decode(&cl); err != nil {
				pc.SendError(m.ID, err)
				return true
			}
		}
		ev.Reason = cl.Reason
	default:
		return false
	}
	if body != nil {
		if err := m.Decode(body); err != nil {
			pc.SendError(m.ID, err)
			return true
		}
	}
	if ev.Type == EventReady || ev.Type == EventChange {
		st := ev.State
		c.mu.Lock()
		c.meshState = &st
		c.mu.Unlock()
	}
	c.deliver(ev)
	return true
}

// deliver queues ev, dropping the oldest event when the queue is full. Only
// the reader calls it, so the send after a drop cannot block.
func (c *Conn) deliver(ev Event) {
	for {
		select {
		case c.events <- ev:
			return
		default:
		}
		select {
		case <-c.events:
			c.dropped.Add(1)
		default:
		}
	}
}

// ReadPeers reads a peers file (BERTH_PEERS_FILE): the running instances
// of the child's need. The master replaces it atomically, so a read never
// sees half a file.
func ReadPeers(path string) ([]pipes.Peer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ps []pipes.Peer
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("peers file %s: %w", path, err)
	}
	for i := range ps {
		if err := ps[i].Validate(); err != nil {
			return nil, fmt.Errorf("peers file %s: [%d]: %w", path, i, err)
		}
	}
	return ps, nil
}
