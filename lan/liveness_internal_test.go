package lan

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"berth/pipes"
)

// hasMonotonic reports whether t carries a monotonic clock reading: the time
// package documents that String then ends with "m=±<seconds>".
func hasMonotonic(t time.Time) bool { return strings.Contains(t.String(), " m=") }

// TestLivenessTimesAreMonotonic guards the defence against wall-clock
// jumps. With the real clock, every liveness timestamp must carry a
// monotonic reading: Time.Sub then subtracts the monotonic readings and
// ignores the wall clock, so if an operator or NTP steps the wall clock an
// hour back or forward while a master is quiet, its TTL still fires after
// exactly MasterTTL of real time, neither at once nor an hour late. A
// timestamp passed through UTC(), Round(0) or JSON loses the reading (as
// the last check shows), and a TTL computed from it would follow the wall
// clock: that is the mistake this test catches.
func TestLivenessTimesAreMonotonic(t *testing.T) {
	s, err := Open(t.Context(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), MasterTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pipes.DialWS(t.Context(), "ws://"+s.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const id = "0123456789abcdef"
	if err := conn.SendBody(pipes.TypeHello, 0, &pipes.Hello{ID: id, Name: "m1", Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	msg, err := conn.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var w pipes.Welcome
	if err := msg.Decode(&w); err != nil || msg.Type != pipes.TypeWelcome {
		t.Fatalf("first answer %s: %v", msg.Type, err)
	}
	if w.HeartbeatMS != 12*60*1000 || w.TTLMS != 60*60*1000 || w.StopGraceMS != 5000 {
		t.Errorf("welcome = %+v, want heartbeat 12m (TTL/5), ttl 1h and the default stop grace, 5 s", w)
	}
	// A ping after the hello: its pong proves the frame was recorded.
	if err := conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: 7}); err != nil {
		t.Fatal(err)
	}
	if msg, err := conn.Recv(); err != nil || msg.Type != pipes.TypePong || msg.ID != 7 {
		t.Fatalf("answer to ping = %+v, %v", msg, err)
	}
	s.mu.Lock()
	seen := s.masters[id].seen()
	ping := s.masters[id].lastPing
	s.mu.Unlock()
	if !hasMonotonic(seen) || !hasMonotonic(ping) {
		t.Errorf("session last seen %v, last ping %v: want monotonic readings", seen, ping)
	}

	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		g, ok := s.gone[id]
		s.mu.Unlock()
		if ok {
			if !hasMonotonic(g.since) || !g.heard || !g.since.Equal(seen) {
				t.Errorf("gone since %v (heard %v), want the monotonic last-seen time %v", g.since, g.heard, seen)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the master never counted as gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if hasMonotonic(seen.UTC()) {
		t.Error("UTC() kept the monotonic reading: hasMonotonic cannot tell")
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for _, tt := range []struct{ ttl, want time.Duration }{
		{5 * time.Second, time.Second},
		{time.Second, 200 * time.Millisecond},
		{250 * time.Millisecond, 50 * time.Millisecond},
		{100 * time.Millisecond, 50 * time.Millisecond},
		{60 * time.Millisecond, 30 * time.Millisecond},
	} {
		s := &Server{cfg: Config{MasterTTL: tt.ttl}}
		hb := s.heartbeat()
		if hb != tt.want {
			t.Errorf("TTL %v: heartbeat %v, want %v", tt.ttl, hb, tt.want)
		}
		w := pipes.Welcome{HeartbeatMS: int(hb / time.Millisecond), TTLMS: int(tt.ttl / time.Millisecond)}
		if err := w.Validate(); err != nil {
			t.Errorf("TTL %v: welcome %+v does not validate: %v", tt.ttl, w, err)
		}
	}
}
