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
// committer leaves the pending batch to it (leftToAPI counts it, and the
// batch stays pending once the call is gone); the next API call writes it,
// here one whose plan fails (the need does not exist), before it answers.
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

// TestFailingAPIWritesLeftBatch: while API calls keep coming, the
// committer leaves every pending batch to them; a call whose plan fails
// writes it anyway, before it answers. Without that, a client looping on
// calls that fail (a scale of a need that does not exist) would hold back
// every grant and event of the LAN.
func TestFailingAPIWritesLeftBatch(t *testing.T) {
	s, err := Open(t.Context(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.apiWriters.Add(1) // other API calls, in persist for the whole test
	defer s.apiWriters.Add(-1)
	for i := range 3 {
		s.mu.Lock()
		s.publishLocked(Event{Time: time.Now(), Kind: EventNeedAdded, Need: "probe"})
		s.mu.Unlock()
		if _, err := s.ScaleNeed("missing", 1); !errors.Is(err, needs.ErrNotFound) {
			t.Fatalf("ScaleNeed of a missing need: %v, want ErrNotFound", err)
		}
		s.bmu.Lock()
		empty := s.pending.empty()
		s.bmu.Unlock()
		if !empty {
			t.Fatalf("call %d: the pending batch is still pending after a failed API call returned", i)
		}
	}
}
