package master_test

import (
	"strings"
	"testing"
	"time"

	"berth/pipes"
)

// TestUnknownTypeAnsweredUnsupported: a message type the master does not
// know is answered with an "unsupported" error carrying its id (it used to
// be "internal"), and the link stays up; a frame of another protocol
// version is answered "unsupported" too, and the link is closed.
func TestUnknownTypeAnsweredUnsupported(t *testing.T) {
	f := newFakeLan(t)
	openAgent(t, testConfig(t, f.addr))
	l := f.next(t, 10*time.Second)
	if err := l.conn.SendBody(pipes.TypeWelcome, 0, &pipes.Welcome{HeartbeatMS: 1000, TTLMS: 5000}); err != nil {
		t.Fatal(err)
	}
	frames := l.recvAll(true)
	if err := l.conn.SendBody("frobnicate", 9, nil); err != nil {
		t.Fatal(err)
	}
	expect := func(what string, match func(*pipes.Msg) bool) *pipes.Msg {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m, ok := <-frames:
				if !ok {
					t.Fatalf("link closed while waiting for %s", what)
				}
				if match(m) {
					return m
				}
			case <-timeout:
				t.Fatalf("no %s within 10s", what)
			}
		}
	}
	m := expect("an answer to id 9", func(m *pipes.Msg) bool { return m.ID == 9 })
	if m.Type != pipes.TypeError || m.Error == nil || m.Error.Code != pipes.CodeUnsupported || !strings.Contains(m.Error.Message, "frobnicate") {
		t.Fatalf("answer to an unknown type = %+v (%v), want an unsupported error naming it", m, m.Error)
	}
	// The link is still up: the master answers a ping.
	if err := l.conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: 10}); err != nil {
		t.Fatal(err)
	}
	expect("the pong", func(m *pipes.Msg) bool { return m.Type == pipes.TypePong && m.ID == 10 })

	// Another version: answered, then the link closes and the master dials again.
	if err := l.conn.Send(&pipes.Msg{V: 2, Type: "offer", ID: 11}); err != nil {
		t.Fatal(err)
	}
	m = expect("an answer to the v2 frame", func(m *pipes.Msg) bool { return m.ID == 11 })
	if m.Error == nil || m.Error.Code != pipes.CodeUnsupported {
		t.Fatalf("answer to a v2 frame = %+v, want unsupported", m)
	}
	for range frames {
	}
	f.next(t, 10*time.Second)
}
