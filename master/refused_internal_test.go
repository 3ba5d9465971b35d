package master

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/lan"
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

// TestUnreachableLoggedSparingly (issue 8 §2): a master whose lanmanager
// cannot be reached logged "link down" at INFO every 2 s forever. Now the
// first failure of an outage is INFO, then WARN lines come at growing
// intervals with the attempts so far, and the other attempts are DEBUG.
func TestUnreachableLoggedSparingly(t *testing.T) {
	oldWarn, oldMax := unreachableWarn, unreachableWarnMax
	unreachableWarn, unreachableWarnMax = 300*time.Millisecond, time.Second
	t.Cleanup(func() { unreachableWarn, unreachableWarnMax = oldWarn, oldMax })

	base := freeports.Block(t, 7)
	cfg := DefaultConfig()
	cfg.LanManagerAddress = "127.0.0.1:" + strconv.Itoa(base+6) // reserved for this test, nothing listens
	cfg.Name, cfg.AdvertiseAddress = "m1", "127.0.0.1"
	cfg.PortRangeStart = map[needs.Protocol]int{needs.TCP: base, needs.HTTP: base + 2, needs.WS: base + 4}
	cfg.PortRangeSize = 2
	cfg.RuntimeDirectory = filepath.Join(t.TempDir(), "rt")
	var logs lockedBuf
	a, err := Open(t.Context(), Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	count := func(level, msg string) int {
		n := 0
		for line := range strings.Lines(logs.String()) {
			if strings.Contains(line, "level="+level) && strings.Contains(line, msg) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for count("WARN", "lanmanager unreachable") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 WARN lines within 30 s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by the deadline
	}
	a.Close()
	info, warn, debug := count("INFO", "lanmanager link down"), count("WARN", "lanmanager unreachable"), count("DEBUG", "lanmanager link down")
	t.Logf("FIGURE unreachable lanmanager: 1 INFO, %d WARN, %d DEBUG lines for %d attempts", warn, debug, info+warn+debug)
	if info != 1 {
		t.Errorf("%d INFO lines, want 1 (the first failure of the outage):\n%s", info, logs.String())
	}
	if debug == 0 {
		t.Errorf("no attempt was logged at DEBUG: every one was at INFO or WARN:\n%s", logs.String())
	}
}

// TestRefusedDuplicateName: a second master under a name a connected one
// uses is refused; it says so at ERROR, naming the name, and asks again
// only after refusedDelay; the first master keeps its link.
func TestRefusedDuplicateName(t *testing.T) {
	old := refusedDelay
	refusedDelay = 300 * time.Millisecond
	t.Cleanup(func() { refusedDelay = old })
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	open := func(logs *lockedBuf) *Agent {
		base := freeports.Block(t, 6)
		cfg := DefaultConfig()
		cfg.LanManagerAddress = srv.Addr()
		cfg.Name, cfg.AdvertiseAddress = "dup", "127.0.0.1"
		cfg.PortRangeStart = map[needs.Protocol]int{needs.TCP: base, needs.HTTP: base + 2, needs.WS: base + 4}
		cfg.PortRangeSize = 2
		cfg.RuntimeDirectory = filepath.Join(t.TempDir(), "rt")
		a, err := Open(t.Context(), Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	var firstLogs, logs lockedBuf
	first := open(&firstLogs)
	deadline := time.Now().Add(20 * time.Second)
	for !first.Linked() {
		if time.Now().After(deadline) {
			t.Fatal("the first master did not link")
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
	open(&logs)
	refusals := func() []time.Time {
		var at []time.Time
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, `level=ERROR msg="the lanmanager refused this master`) {
				continue
			}
			if !strings.Contains(line, `master name \"dup\" is already used by connected master`) {
				t.Errorf("the refusal does not say the name is taken: %s", line)
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			if when, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				at = append(at, when)
			}
		}
		return at
	}
	for len(refusals()) < 3 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("fewer than 3 refusals logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by the deadline
	}
	at := refusals()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < refusedDelay {
			t.Errorf("refusal %d came %s after the previous one, want at least %s", i, gap, refusedDelay)
		}
	}
	if !first.Linked() {
		t.Error("the first master lost its link")
	}
}
