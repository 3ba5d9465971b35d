package pipes_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

// frame prefixes envelope with its big-endian length.
func frame(envelope string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(envelope))), envelope...)
}

// mustNew builds a message or fails the test.
func mustNew(tb testing.TB, typ string, id uint64, body any) *pipes.Msg {
	tb.Helper()
	m, err := pipes.New(typ, body)
	if err != nil {
		tb.Fatalf("New(%q): %v", typ, err)
	}
	m.ID = id
	return m
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	started := pipes.Started{
		Alloc:     "a1b2c3d4e5",
		Instance:  "web.0",
		PID:       4242,
		Address:   "10.0.0.7",
		Ports:     map[needs.Protocol]int{needs.HTTP: 16000, needs.TCP: 15000},
		StartedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	tests := []struct {
		name string
		msg  *pipes.Msg
	}{
		{"no body", &pipes.Msg{V: 1, Type: pipes.TypePing}},
		{"zero version becomes 1", &pipes.Msg{Type: pipes.TypeChildReady}},
		{"id", &pipes.Msg{V: 1, Type: pipes.TypePong, ID: 1<<64 - 1}},
		{"started body", mustNew(t, pipes.TypeStarted, 7, started)},
		{"child hello", mustNew(t, pipes.TypeChildHello, 0, pipes.ChildHello{PID: 1})},
		{"child stop", mustNew(t, pipes.TypeChildStop, 3, pipes.ChildStop{Reason: "scale <down> & out", GraceMS: 5000})},
		{"stats", mustNew(t, pipes.TypeStats, 0, pipes.Stats{PID: 9, CPUPercent: 12.5, RSS: 1 << 30})},
		{"array body", mustNew(t, pipes.TypePS, 1, []pipes.ChildInfo{{Instance: "a.1", PID: 2}})},
		{"64-byte type", &pipes.Msg{V: 1, Type: strings.Repeat("a", 64)}},
		{"type alphabet", &pipes.Msg{V: 1, Type: "abc.xyz_019-"}},
	}
	for _, c := range pipes.Codes() {
		tests = append(tests, struct {
			name string
			msg  *pipes.Msg
		}{"error " + string(c), &pipes.Msg{V: 1, Type: pipes.TypeError, ID: 5, Error: &pipes.Error{Code: c, Message: "msg for " + string(c)}}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := *tt.msg
			if want.V == 0 {
				want.V = pipes.Version
			}
			b, err := pipes.Encode(nil, tt.msg)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 {
				t.Fatalf("length prefix %d, envelope is %d bytes", n, len(b)-4)
			}
			r := bytes.NewReader(b)
			got, err := pipes.Decode(r, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", *got, want)
			}
			if _, err := pipes.Decode(r, 0); err != io.EOF {
				t.Errorf("Decode after last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestEncodeAppends(t *testing.T) {
	b, err := pipes.Encode([]byte("xx"), &pipes.Msg{V: 1, Type: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err = pipes.Encode(b, &pipes.Msg{V: 1, Type: "b"})
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(b[2:])
	for _, want := range []string{"a", "b"} {
		m, err := pipes.Decode(r, 0)
		if err != nil || m.Type != want {
			t.Fatalf("Decode = %+v, %v; want type %q", m, err, want)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		msg  *pipes.Msg
		want error
	}{
		{"empty type", &pipes.Msg{V: 1}, pipes.ErrBadFrame},
		{"bad type", &pipes.Msg{V: 1, Type: "Hello"}, pipes.ErrBadFrame},
		{"too large", &pipes.Msg{V: 1, Type: "x", Body: []byte(`"` + strings.Repeat("a", pipes.MaxFrame) + `"`)}, pipes.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pipes.Encode(nil, tt.msg); !errors.Is(err, tt.want) {
				t.Errorf("Encode: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := pipes.Encode(nil, &pipes.Msg{V: 1, Type: "x", Body: []byte("{bad")}); err == nil {
		t.Error("Encode with an invalid JSON body succeeded")
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty stream", nil, io.EOF},
		{"short header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"max uint32 length, header only", []byte{0xff, 0xff, 0xff, 0xff}, pipes.ErrFrameTooLarge},
		{"one over max", binary.BigEndian.AppendUint32(nil, pipes.MaxFrame+1), pipes.ErrFrameTooLarge},
		{"length 0", frame(""), pipes.ErrBadFrame},
		{"length 1", frame("{"), pipes.ErrBadFrame},
		{"truncated envelope", frame(`{"v":1,"type":"x"}`)[:10], io.ErrUnexpectedEOF},
		{"bad JSON", frame(`{"v":1,"type":`), pipes.ErrBadFrame},
		{"not an object", frame(`[1,2]`), pipes.ErrBadFrame},
		{"wrong field type", frame(`{"v":"1","type":"x"}`), pipes.ErrBadFrame},
		{"negative id", frame(`{"v":1,"type":"x","id":-1}`), pipes.ErrBadFrame},
		{"unknown field", frame(`{"v":1,"type":"x","extra":true}`), pipes.ErrBadFrame},
		{"unknown error field", frame(`{"v":1,"type":"error","error":{"code":"invalid","message":"m","x":1}}`), pipes.ErrBadFrame},
		{"version 2", frame(`{"v":2,"type":"x"}`), pipes.ErrUnsupported},
		{"version missing", frame(`{"type":"x"}`), pipes.ErrUnsupported},
		{"type missing", frame(`{"v":1}`), pipes.ErrBadFrame},
		{"type empty", frame(`{"v":1,"type":""}`), pipes.ErrBadFrame},
		{"type 65 bytes", frame(`{"v":1,"type":"` + strings.Repeat("a", 65) + `"}`), pipes.ErrBadFrame},
		{"type upper case", frame(`{"v":1,"type":"Hello"}`), pipes.ErrBadFrame},
		{"type space", frame(`{"v":1,"type":"a b"}`), pipes.ErrBadFrame},
		{"type slash", frame(`{"v":1,"type":"a/b"}`), pipes.ErrBadFrame},
		{"type non-ASCII", frame(`{"v":1,"type":"café"}`), pipes.ErrBadFrame},
		{"unknown error code", frame(`{"v":1,"type":"error","error":{"code":"nope","message":"m"}}`), pipes.ErrBadFrame},
		{"empty error code", frame(`{"v":1,"type":"error","error":{}}`), pipes.ErrBadFrame},
		{"trailing object", frame(`{"v":1,"type":"x"}{}`), pipes.ErrBadFrame},
		{"trailing number", frame(`{"v":1,"type":"x"} 1`), pipes.ErrBadFrame},
		{"trailing brace", frame(`{"v":1,"type":"x"}}`), pipes.ErrBadFrame},
		{"trailing bracket", frame(`{"v":1,"type":"x"}]`), pipes.ErrBadFrame},
		{"trailing garbage", frame(`{"v":1,"type":"x"}?`), pipes.ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := pipes.Decode(bytes.NewReader(tt.input), 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", m, err, tt.want)
			}
			if m != nil {
				t.Errorf("Decode returned a message with error %v", err)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	for _, env := range []string{
		`{"v":1,"type":"x"}`,
		" \t\r\n" + `{"v":1,"type":"x"}` + " \t\r\n",
		`{"type":"x","v":1,"id":0}`,
		`{"v":1,"type":"x","body":{"unknown":"fields are fine in a body"}}`,
		`{"v":1,"type":"x","error":null}`,
	} {
		if _, err := pipes.Decode(bytes.NewReader(frame(env)), 0); err != nil {
			t.Errorf("Decode(%s): %v", env, err)
		}
	}
}

func TestDecodeMax(t *testing.T) {
	b := frame(`{"v":1,"type":"abcdefgh"}`) // 25-byte envelope
	if _, err := pipes.Decode(bytes.NewReader(b), 25); err != nil {
		t.Errorf("Decode with max = length: %v", err)
	}
	if _, err := pipes.Decode(bytes.NewReader(b), 24); !errors.Is(err, pipes.ErrFrameTooLarge) {
		t.Errorf("Decode with max = length-1: %v, want ErrFrameTooLarge", err)
	}
	// A max above MaxFrame is clamped to it.
	big := binary.BigEndian.AppendUint32(nil, pipes.MaxFrame+1)
	if _, err := pipes.Decode(bytes.NewReader(big), 4*pipes.MaxFrame); !errors.Is(err, pipes.ErrFrameTooLarge) {
		t.Errorf("Decode with max > MaxFrame: %v, want ErrFrameTooLarge", err)
	}
}

// TestDecodeRefusesBeforeAllocating feeds headers that claim big frames,
// allowed by MaxFrame but not by the caller's max, and checks that Decode
// allocates next to nothing.
func TestDecodeRefusesBeforeAllocating(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, pipes.MaxFrame)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const runs = 20
	for range runs {
		if _, err := pipes.Decode(bytes.NewReader(hdr), 64); !errors.Is(err, pipes.ErrFrameTooLarge) {
			t.Fatalf("Decode: %v, want ErrFrameTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > runs*pipes.MaxFrame/4 {
		t.Errorf("rejecting %d oversize headers allocated %d bytes", runs, got)
	}
}

func TestConnSendRecv(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := pipes.NewConn(a, 0), pipes.NewConn(b, 0)
	t.Cleanup(func() { ca.Close(); cb.Close() })

	errc := make(chan error, 1)
	go func() {
		if err := ca.SendBody(pipes.TypeChildHello, 3, pipes.ChildHello{PID: 77}); err != nil {
			errc <- err
			return
		}
		errc <- ca.SendError(4, fmt.Errorf("lookup web.9: %w", needs.ErrNotFound))
	}()
	m, err := cb.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var h pipes.ChildHello
	if err := m.Decode(&h); err != nil || m.Type != pipes.TypeChildHello || m.ID != 3 || h.PID != 77 {
		t.Errorf("got %+v (%+v, %v)", m, h, err)
	}
	m, err = cb.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != pipes.TypeError || m.ID != 4 || m.Error == nil || !errors.Is(m.Error, needs.ErrNotFound) {
		t.Errorf("error answer = %+v (%v)", m, m.Error)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Close is idempotent and makes Recv fail.
	if err := ca.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := ca.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := cb.Recv(); err == nil {
		t.Error("Recv after the peer closed succeeded")
	}
}

func TestConnRecvLimit(t *testing.T) {
	a, b := net.Pipe()
	ca, cb := pipes.NewConn(a, 0), pipes.NewConn(b, 32)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	go ca.SendBody("x", 0, strings.Repeat("a", 100))
	if _, err := cb.Recv(); !errors.Is(err, pipes.ErrFrameTooLarge) {
		t.Errorf("Recv: %v, want ErrFrameTooLarge", err)
	}
}

// TestConnConcurrentSend sends from several goroutines at once and checks
// that every frame arrives whole, over both transports.
func TestConnConcurrentSend(t *testing.T) {
	transports := map[string]func(t *testing.T) (send, recv *pipes.Conn){
		"net.Pipe": func(t *testing.T) (*pipes.Conn, *pipes.Conn) {
			a, b := net.Pipe()
			return pipes.NewConn(a, 0), pipes.NewConn(b, 0)
		},
		"unix": func(t *testing.T) (*pipes.Conn, *pipes.Conn) {
			l := mustListen(t, socketPath(t))
			accepted := make(chan *pipes.Conn, 1)
			go func() {
				c, err := l.AcceptConn()
				if err != nil {
					t.Error(err)
				}
				accepted <- c
			}()
			c, err := pipes.Dial(t.Context(), l.Path())
			if err != nil {
				t.Fatal(err)
			}
			s := <-accepted
			if s == nil {
				t.FailNow()
			}
			return c, s
		},
	}
	const senders, each = 8, 200
	for name, open := range transports {
		t.Run(name, func(t *testing.T) {
			send, recv := open(t)
			t.Cleanup(func() { send.Close(); recv.Close() })

			var wg sync.WaitGroup
			for g := range senders {
				wg.Go(func() {
					for i := range each {
						id := uint64(g*each + i + 1)
						// Bodies of varying size so frames straddle writes.
						body := pipes.ChildStop{Reason: strings.Repeat("r", int(id%97)*40), GraceMS: int(id)}
						if err := send.SendBody(pipes.TypeChildStop, id, body); err != nil {
							t.Errorf("Send %d: %v", id, err)
							return
						}
					}
				})
			}
			seen := make(map[uint64]bool)
			for range senders * each {
				m, err := recv.Recv()
				if err != nil {
					t.Fatalf("Recv after %d frames: %v", len(seen), err)
				}
				var s pipes.ChildStop
				if err := m.Decode(&s); err != nil {
					t.Fatalf("frame %d: %v", m.ID, err)
				}
				if uint64(s.GraceMS) != m.ID || len(s.Reason) != int(m.ID%97)*40 || seen[m.ID] {
					t.Fatalf("frame %d mangled or repeated: grace %d, reason %d bytes", m.ID, s.GraceMS, len(s.Reason))
				}
				seen[m.ID] = true
			}
			wg.Wait()
		})
	}
}

// TestBatchRetarget: one batch writes two connections in turn; it refuses
// to move while it holds frames, and Reset drops them.
func TestBatchRetarget(t *testing.T) {
	a1, b1 := net.Pipe()
	a2, b2 := net.Pipe()
	c1, c2 := pipes.NewConn(a1, 0), pipes.NewConn(a2, 0)
	r1, r2 := pipes.NewConn(b1, 0), pipes.NewConn(b2, 0)
	for _, c := range []*pipes.Conn{c1, c2, r1, r2} {
		t.Cleanup(func() { c.Close() })
	}
	got := make(chan uint64, 4)
	for _, r := range []*pipes.Conn{r1, r2} {
		go func() {
			for {
				m, err := r.Recv()
				if err != nil {
					return
				}
				got <- m.ID
			}
		}()
	}
	var b pipes.Batch
	if err := b.Retarget(c1); err != nil {
		t.Fatalf("Retarget of an empty batch: %v", err)
	}
	if err := b.Add(&pipes.Msg{V: 1, Type: pipes.TypePing, ID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Retarget(c2); err == nil || !strings.Contains(err.Error(), "not flushed") {
		t.Errorf("Retarget with a frame held: %v, want an error saying it is not flushed", err)
	}
	b.Reset()
	if b.Len() != 0 {
		t.Errorf("Len after Reset = %d, want 0", b.Len())
	}
	if err := b.Retarget(c2); err != nil {
		t.Fatalf("Retarget after Reset: %v", err)
	}
	if err := b.Add(&pipes.Msg{V: 1, Type: pipes.TypePing, ID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-got:
		if id != 2 {
			t.Errorf("frame %d arrived, want 2 (frame 1 was reset)", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("frame 2 did not arrive")
	}
	select {
	case id := <-got:
		t.Errorf("frame %d arrived too", id)
	default:
	}
}

// TestWriteTimeout: a write to a peer that reads nothing fails once it has
// waited the write timeout, with the deadline's error.
func TestWriteTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted // reads nothing
	if peer == nil {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	c := pipes.NewConn(raw, 0)
	defer c.Close()
	c.SetWriteTimeout(200 * time.Millisecond)
	big := &pipes.Msg{V: 1, Type: pipes.TypePing, Body: []byte(`"` + strings.Repeat("x", 512<<10) + `"`)}
	deadline := time.Now().Add(time.Minute) // bounds the loop; loopback buffers hold a few MiB
	for {
		err := c.Send(big)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Send: %v, want the write deadline's error", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("every Send succeeded for a minute to a peer that reads nothing")
		}
	}
}
