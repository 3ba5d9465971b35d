package lan

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"berth/needs"
)

// TestCommitterLeavesBatchToAPIWrite checks the hand-over between the
// committer and an API call in persist: while a call is in persist, the
// committer leaves the pending batch to it; when the call ends without
// writing it (here its plan fails: the need does not exist), the call
// wakes the committer, which writes the batch. Without that wake-up the
// batch, and the events and frames waiting for it, would stay until some
// other change came.
func TestCommitterLeavesBatchToAPIWrite(t *testing.T) {
	s, err := Open(t.Context(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pendingEmpty := func() bool {
		s.bmu.Lock()
		defer s.bmu.Unlock()
		return s.pending.empty()
	}

	s.apiWriters.Add(1) // an API call in persist
	s.mu.Lock()
	s.publishLocked(Event{Time: time.Now(), Kind: EventNeedAdded, Need: "probe"}) // wakes the committer
	s.mu.Unlock()
	// The committer takes its token and leaves the batch. Then the call
	// ends without a wake-up: the batch stays pending.
	deadline := time.Now().Add(10 * time.Second)
	for s.leftToAPI.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the committer never left the batch to the API call")
		}
		time.Sleep(time.Millisecond)
	}
	s.apiWriters.Add(-1)
	if pendingEmpty() {
		t.Fatal("the pending batch was written while an API call was in persist")
	}

	if _, err := s.ScaleNeed("missing", 1); !errors.Is(err, needs.ErrNotFound) {
		t.Fatalf("ScaleNeed of a missing need: %v, want ErrNotFound", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !pendingEmpty() {
		if time.Now().After(deadline) {
			t.Fatal("the pending batch was never written after the API call ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
