package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// eventWatch subscribes to /v1/events and records each event's delivery
// lag: the time from its publication (the event's own time stamp, taken
// by the lanmanager on this machine's clock) to its arrival here, under
// the phase current on arrival. The lanmanager drops a subscriber that
// falls more than 1,024 events behind; eventWatch counts such drops and
// subscribes again, at most maxResubscribe times.
type eventWatch struct {
	url, token string

	mu    sync.Mutex // Protects following.
	phase string
	lag   map[string][]time.Duration
	drops int
	err   error // why the watch gave up, if it did
}

const maxResubscribe = 100

func newEventWatch(addr, token string) *eventWatch {
	return &eventWatch{url: "ws://" + strings.TrimPrefix(addr, "http://") + "/v1/events", token: token,
		lag: map[string][]time.Duration{}}
}

func (w *eventWatch) setPhase(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.phase = p
}

// dial subscribes.
func (w *eventWatch) dial(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{}
	if w.token != "" {
		h.Set("Authorization", "Bearer "+w.token)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, w.url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(4 << 20)
	return c, nil
}

// run reads events until ctx ends; first is the subscription dial()
// returned, so that the caller knows it is live before the load begins.
func (w *eventWatch) run(ctx context.Context, first *websocket.Conn) {
	c := first
	for attempt := 0; ; attempt++ {
		err := w.read(ctx, c)
		c.CloseNow()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.drops++
		w.mu.Unlock()
		if attempt >= maxResubscribe {
			w.fail(err)
			return
		}
		if c, err = w.dial(ctx); err != nil {
			w.fail(err)
			return
		}
	}
}

func (w *eventWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// read records events until the subscription ends.
func (w *eventWatch) read(ctx context.Context, c *websocket.Conn) error {
	var e struct {
		Time time.Time `json:"time"`
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		if err := json.Unmarshal(b, &e); err != nil {
			return errors.New("event: " + err.Error())
		}
		w.mu.Lock()
		w.lag[w.phase] = append(w.lag[w.phase], now.Sub(e.Time))
		w.mu.Unlock()
	}
}

// stats returns the lag per phase, the drops, and why the watch gave up.
func (w *eventWatch) stats() (map[string]dist, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]dist{}
	for p, ds := range w.lag {
		out[p] = distOf(ds)
	}
	return out, w.drops, w.err
}
