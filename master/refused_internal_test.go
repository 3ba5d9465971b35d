package master

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/needs"
)

type lockedBuf struct {
	mu sync.Mutex // Protects following.
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusedBacksOff: a master whose token the lanmanager refuses says so
// at ERROR and asks again only after refusedDelay, never in the 100 ms to
// 2 s loop of an ordinary dropped link (it used to log at INFO forever).
func TestRefusedBacksOff(t *testing.T) {
	old := refusedDelay
	refusedDelay = 300 * time.Millisecond
	t.Cleanup(func() { refusedDelay = old })

	var mu sync.Mutex
	var tries []time.Time
	lan := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries = append(tries, time.Now())
		mu.Unlock()
		http.Error(w, `{"error":"missing or wrong bearer token"}`, http.StatusUnauthorized)
	}))
	defer lan.Close()

	base := freeports.Block(t, 6)
	cfg := DefaultConfig()
	cfg.LanManagerAddress = strings.TrimPrefix(lan.URL, "http://")
	cfg.Name, cfg.AdvertiseAddress, cfg.Token = "m1", "127.0.0.1", "wrong"
	cfg.PortRangeStart = map[needs.Protocol]int{needs.TCP: base, needs.HTTP: base + 2, needs.WS: base + 4}
	cfg.PortRangeSize = 2
	dir, err := os.MkdirTemp("", "br")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.RuntimeDirectory = filepath.Join(dir, "rt")
	var logs lockedBuf
	a, err := Open(t.Context(), Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(tries)
		mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tries in 20 s, want 3", n)
		}
		time.Sleep(20 * time.Millisecond) // polling the fake lanmanager's count, bounded by the deadline
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(tries); i++ {
		if gap := tries[i].Sub(tries[i-1]); gap < refusedDelay {
			t.Errorf("try %d came %s after the previous one, want at least %s", i, gap, refusedDelay)
		}
	}
	out := logs.String()
	if !strings.Contains(out, `level=ERROR msg="the lanmanager refused this master; it will ask again later"`) || !strings.Contains(out, "token") {
		t.Errorf("no ERROR line naming the token:\n%s", out)
	}
	if strings.Contains(out, "lanmanager link down; reconnecting") {
		t.Errorf("a refusal was logged as an ordinary dropped link:\n%s", out)
	}
}
