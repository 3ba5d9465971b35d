package ipchub_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/ipchub"
)

// TestWriteTimeout: a peer that reads nothing, with a queue long enough
// never to fill, is disconnected once the kernel's buffers are full and a
// batched write waits WriteTimeout; the others hear of it.
func TestWriteTimeout(t *testing.T) {
	const frame, maxFrames = 16000, 4000 // up to 64 MB, beyond loopback's socket buffers
	hub, base := newTestHub(t, ipchub.Options{QueueLen: maxFrames + 16, WriteTimeout: 300 * time.Millisecond})
	dial(t, base, "db", "stuck-peer", "") // never read from again
	sender := dial(t, base, "db", "sender-peer", "")
	heard := make(chan struct{})
	go func() {
		defer close(heard)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		for {
			_, b, err := sender.c.Read(ctx)
			if err != nil || string(b) == "disconnect:stuck-peer" {
				return
			}
		}
	}()
	msg := "to:stuck-peer;" + strings.Repeat("x", frame)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	for i := 0; i < maxFrames && hub.Stats().SlowDisconnects == 0; i++ {
		if err := sender.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	select {
	case <-heard:
	case <-ctx.Done():
		t.Fatalf("no disconnect:stuck-peer; counters %+v", hub.Stats())
	}
	if s := hub.Stats(); s.SlowDisconnects != 1 {
		t.Errorf("slow disconnects %d, want 1 (%+v)", s.SlowDisconnects, s)
	}
}
