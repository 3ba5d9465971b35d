package lan

import (
	"sync"
	"time"

	"berth/needs"
)

// Event is one state change, as sent on /v1/events.
type Event struct {
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Kind     string          `json:"kind"`
	Need     string          `json:"need,omitempty"`
	Instance *needs.Instance `json:"instance,omitempty"`
	Master   *needs.Master   `json:"master,omitempty"`
	Message  string          `json:"message,omitempty"`
}

// Event kinds.
const (
	EventNeedAdded       = "need.added"
	EventNeedScaled      = "need.scaled"
	EventNeedRemoved     = "need.removed"
	EventInstance        = "instance"         // an instance changed state or placement
	EventInstanceRemoved = "instance.removed" // an instance record was dropped
	EventNeedRestarted   = "need.restarted"   // `need restart`: backed-off instances retried now
	EventMasterUp        = "master.connected"
	EventMasterDown      = "master.disconnected" // its link closed, or it was not heard from for the TTL
	EventMasterLost      = "master.lost"         // not heard from for the TTL: its instances are placed again
	EventMasterDrain     = "master.drain"        // the master takes no new work; its instances move
	EventMasterUndrain   = "master.undrain"      // the master takes work again
	EventMasterIngress   = "master.ingress"      // an ingress port of the master opened, or cannot open (Message says which)
)

// hub fans events out to subscribers. A subscriber that falls behind by more
// than its buffer is dropped (its channel is closed) rather than slowing the
// lanmanager down.
type hub struct {
	mu   sync.Mutex // Protects following.
	seq  uint64
	subs map[chan Event]struct{}
}

func newHub() *hub { return &hub{subs: map[chan Event]struct{}{}} }

func (h *hub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	e.Seq = h.seq
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *hub) subscribe(buf int) chan Event {
	ch := make(chan Event, buf)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *hub) unsubscribe(ch chan Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		close(ch)
	}
	h.subs = map[chan Event]struct{}{}
}
