package pipes_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"berth/pipes"
)

// TestVersionMismatchAnswered: a frame of another protocol version is
// answered with an "unsupported" error carrying its id and naming both
// versions, and Recv returns a *VersionError (the caller closes). An error
// frame of another version is not answered, so two peers never ping-pong.
func TestVersionMismatchAnswered(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := pipes.NewConn(a, 0), pipes.NewConn(b, 0)
	t.Cleanup(func() { ca.Close(); cb.Close() })

	// ca reads whatever cb answers (net.Pipe has no buffer).
	answers := make(chan *pipes.Msg, 4)
	go func() {
		defer close(answers)
		for {
			m, err := ca.Recv()
			if err != nil {
				return
			}
			answers <- m
		}
	}()

	go a.Write(frame(`{"v":2,"type":"hello","id":5}`))
	_, err := cb.Recv()
	var ve *pipes.VersionError
	if !errors.As(err, &ve) || !errors.Is(err, pipes.ErrUnsupported) || ve.V != 2 || ve.ID != 5 {
		t.Fatalf("Recv of a v2 frame = %v, want a VersionError for v2, id 5", err)
	}
	var m *pipes.Msg
	select {
	case m = <-answers:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to a v2 frame")
	}
	if m == nil || m.Type != pipes.TypeError || m.ID != 5 || m.Error == nil || m.Error.Code != pipes.CodeUnsupported ||
		!strings.Contains(m.Error.Message, "version 2, want 1") {
		t.Fatalf("answer = %+v, want an unsupported error for id 5 naming the versions", m)
	}

	go a.Write(frame(`{"v":2,"type":"error","id":6}`))
	if _, err := cb.Recv(); !errors.As(err, &ve) {
		t.Fatalf("Recv of a v2 error frame = %v", err)
	}
	cb.Close() // had cb answered, ca would have read a frame before the close
	for m := range answers {
		t.Errorf("answer to a v2 error frame: %+v", m)
	}
}
