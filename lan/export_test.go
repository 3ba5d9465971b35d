package lan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"berth/internal/httplimit"
)

// MaxChecks is maxChecks, for the tests of package lan_test.
const MaxChecks = maxChecks

// ConnPeak is the most connections the server has held open at once.
func (s *Server) ConnPeak() int64 { return int64(s.ln.(*httplimit.Listener).Peak()) }

// ConnPeak is the most connections the hub has held open at once.
func (h *IPCHub) ConnPeak() int { return h.ln.(*httplimit.Listener).Peak() }

// ConnPeak is the most connections the gateway has held open at once.
func (g *Gateway) ConnPeak() int { return g.ln.(*httplimit.Listener).Peak() }

// BreakStore makes every write to lan.db fail, as a failing disk would,
// until RepairStore: it closes the bbolt file.
func (s *Server) BreakStore() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.store.Close()
}

// RepairStore opens lan.db again after BreakStore.
func (s *Server) RepairStore() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st, err := OpenStore(filepath.Join(s.cfg.DataDir, "lan.db"))
	if err != nil {
		return err
	}
	s.store = st
	return nil
}

// WriteFailures counts the batch writes that failed.
func (s *Server) WriteFailures() int64 { return s.writeFailures.Load() }

// HoldLock takes Server.mu until release is called.
func (s *Server) HoldLock() (release func()) {
	s.mu.Lock()
	return s.mu.Unlock
}

// SetCheckpointBytes makes the stores opened until the test ends
// checkpoint once their journal holds n bytes.
func SetCheckpointBytes(t testing.TB, n int64) {
	old := checkpointBytes.Swap(n)
	t.Cleanup(func() { checkpointBytes.Store(old) })
}

// SegmentName is the file name of journal segment n.
func SegmentName(n uint64) string { return segmentName(n) }

// WriteSegment writes journal segment n at path holding the frames of cs.
func WriteSegment(path string, n uint64, cs ...*Change) error {
	b := segmentHeader(n)
	for _, c := range cs {
		e, err := encodeChange(c)
		if err != nil {
			return err
		}
		p, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b = appendFrame(b, p)
	}
	return os.WriteFile(path, b, 0o600)
}

// LinkWriterCount is linkWriterCount.
var LinkWriterCount = linkWriterCount

// ExtraLinkWriters is how many extra link writers have started.
func (s *Server) ExtraLinkWriters() int { return s.writers.extraStarted() }

// LoadsDropped counts the loads frames dropped over a master's budget.
func (s *Server) LoadsDropped() int64 { return s.loadsDropped.Load() }
