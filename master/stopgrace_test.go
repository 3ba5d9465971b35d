package master_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// TestStopGraceBounded: a stop whose grace_ms is beyond 24 h (it used to
// overflow time.Duration, 9,300,000,000,000 ms wrapping negative) is refused
// with an error naming grace_ms, and the child keeps running; a stop with a
// sane grace then stops it.
func TestStopGraceBounded(t *testing.T) {
	f := newFakeLan(t)
	cfg := testConfig(t, f.addr)
	a := openAgent(t, cfg)
	l := f.next(t, 10*time.Second)
	l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 100, TTLMS: 5000})
	frames := l.recvAll(true)
	exe, _ := os.Executable()
	const alloc = "alloc-grace-1"
	need := needs.Need{Name: "svc", Command: []string{exe}, Instances: 1, Protocols: []needs.Protocol{needs.HTTP}}
	if err := l.conn.SendBody(pipes.TypeGrant, 0, &pipes.Grant{Instance: "svc.0", Alloc: alloc, Need: need}); err != nil {
		t.Fatal(err)
	}
	next := func(want string) *pipes.Msg {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case msg, ok := <-frames:
				if !ok {
					t.Fatalf("link closed waiting for %s", want)
				}
				switch msg.Type {
				case want:
					return msg
				case pipes.TypePing, pipes.TypeStats, pipes.TypeReady:
				default:
					t.Fatalf("got %s (%s %v) waiting for %s", msg.Type, msg.Body, msg.Error, want)
				}
			case <-timeout:
				t.Fatalf("no %s within 20s", want)
			}
		}
	}
	var st pipes.Started
	if err := next(pipes.TypeStarted).Decode(&st); err != nil {
		t.Fatal(err)
	}

	if err := l.conn.SendBody(pipes.TypeStop, 0, &pipes.Stop{Alloc: alloc, Reason: "huge grace", GraceMS: 9300000000000}); err != nil {
		t.Fatal(err)
	}
	e := next(pipes.TypeError).Error
	if e == nil || e.Code != pipes.CodeInvalid || !strings.Contains(e.Message, "grace_ms") {
		t.Fatalf("answer to a stop with grace_ms 9300000000000: %+v, want invalid naming grace_ms", e)
	}
	// The master handles the link's frames in order: once the pong to a
	// later ping is back, the refused stop has had all its effect.
	if err := l.conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: 77}); err != nil {
		t.Fatal(err)
	}
	next(pipes.TypePong)
	if !alive(st.PID) || len(a.Children()) != 1 {
		t.Fatalf("child %d alive %v, master lists %d children, after a refused stop; want it untouched", st.PID, alive(st.PID), len(a.Children()))
	}

	if err := l.conn.SendBody(pipes.TypeStop, 0, &pipes.Stop{Alloc: alloc, Reason: "sane grace", GraceMS: 1000}); err != nil {
		t.Fatal(err)
	}
	var ex pipes.Exited
	if err := next(pipes.TypeExited).Decode(&ex); err != nil {
		t.Fatal(err)
	}
	if ex.Alloc != alloc || !ex.Requested {
		t.Errorf("exit %+v, want %s stopped on request", ex, alloc)
	}
	waitFor(t, 10*time.Second, "the child to be gone", func() bool { return !alive(st.PID) })
}
