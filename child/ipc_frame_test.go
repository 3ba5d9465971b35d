package child

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestParseHubFrame(t *testing.T) {
	for _, tt := range []struct {
		in   string
		kind hubFrameKind
		arg  string
	}{
		{"pong", hubPong, ""},
		{`welcome:{"maxPayload":16384}`, hubWelcome, `{"maxPayload":16384}`},
		{"connect:peer-a", hubJoin, "peer-a"},
		{"disconnect:[master]", hubLeave, "[master]"},
		{"get:0123456789abcdef0123456789abcdef", hubLarge, "0123456789abcdef0123456789abcdef"},
		{`{"type":"lock-request"}`, hubMessage, `{"type":"lock-request"}`},
		{"ping", hubMessage, "ping"},
		{"pong ", hubMessage, "pong "},
		{"connect:", hubMessage, "connect:"},
		{"get:", hubMessage, "get:"},
		{"", hubMessage, ""},
	} {
		f := parseHubFrame([]byte(tt.in))
		if f.kind != tt.kind || string(f.arg) != tt.arg {
			t.Errorf("parseHubFrame(%q) = %v %q, want %v %q", tt.in, f.kind, f.arg, tt.kind, tt.arg)
		}
	}
}

func TestParseWelcome(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{`{"maxPayload":16384}`, 16384, false},
		{`{ "maxPayload" : 1, "other": [1,2] }`, 1, false},
		{`{"maxPayload":1e3}`, 0, true},
		{`{"maxPayload":99999999999}`, maxWelcomePayload, false},
		{`{"maxPayload":0}`, 0, true},
		{`{"maxPayload":-5}`, 0, true},
		{`{"maxPayload":"16384"}`, 0, true},
		{`{"maxPayload":16384.5}`, 0, true},
		{`{}`, 0, true},
		{`{"maxPayload":null}`, 0, true},
		{`[]`, 0, true},
		{`{"maxPayload":16384`, 0, true},
		{``, 0, true},
	} {
		got, err := parseWelcome([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseWelcome(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestBroadcastFrame: a payload the hub would read as a ping or a to:
// frame gets the to:all; prefix; others go bare.
func TestBroadcastFrame(t *testing.T) {
	for in, want := range map[string]string{
		"hello":      "hello",
		`{"a":1}`:    `{"a":1}`,
		"ping":       "to:all;ping",
		"to:x;y":     "to:all;to:x;y",
		"to:":        "to:all;to:",
		"pingpong":   "pingpong",
		"":           "",
		"to:all;abc": "to:all;to:all;abc",
	} {
		if got := string(broadcastFrame([]byte(in))); got != want {
			t.Errorf("broadcastFrame(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(toFrame("peer-b", []byte("x;y"))); got != "to:peer-b;x;y" {
		t.Errorf("toFrame = %q", got)
	}
}

// FuzzParseHubFrame: every frame is classified; prefix and argument give
// the frame back; a payload the client sends on the socket (one that
// does not need the large path) reads as itself on arrival.
func FuzzParseHubFrame(f *testing.F) {
	for _, s := range []string{"pong", `welcome:{"maxPayload":16384}`, "connect:peer-a", "disconnect:peer-a",
		"get:0123456789abcdef0123456789abcdef", `{"type":"hello"}`, "ping", "connect:", ""} {
		f.Add([]byte(s))
	}
	prefixes := map[hubFrameKind]string{hubWelcome: prefixWelcome, hubJoin: prefixConnect, hubLeave: prefixDisconnect, hubLarge: prefixGet}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		fr := parseHubFrame(b)
		switch fr.kind {
		case hubPong:
			if string(in) != "pong" {
				t.Fatalf("%q read as pong", in)
			}
		case hubMessage:
			if !bytes.Equal(fr.arg, in) {
				t.Fatalf("message %q read as %q", in, fr.arg)
			}
		default:
			p, ok := prefixes[fr.kind]
			if !ok || len(fr.arg) == 0 || p+string(fr.arg) != string(in) {
				t.Fatalf("%q read as kind %v, argument %q", in, fr.kind, fr.arg)
			}
		}
		if !needsLarge(in) && fr.kind != hubMessage {
			t.Fatalf("payload %q goes on the socket but arrives as kind %v", in, fr.kind)
		}
		if fr.kind == hubWelcome {
			if n, err := parseWelcome(fr.arg); err == nil && (n < 1 || n > maxWelcomePayload) {
				t.Fatalf("welcome %q gave maxPayload %d", in, n)
			}
		}
	})
}

// FuzzParseWelcome: the welcome JSON never panics, never gives a
// maxPayload out of range, and the hub's own frame round-trips.
func FuzzParseWelcome(f *testing.F) {
	for _, s := range []string{`{"maxPayload":16384}`, `{"maxPayload":0}`, `{"maxPayload":1e3}`, `{}`, `null`, `{"maxPayload":"1"}`} {
		f.Add([]byte(s), int64(16384))
	}
	f.Fuzz(func(t *testing.T, b []byte, n int64) {
		if got, err := parseWelcome(b); err == nil && (got < 1 || got > maxWelcomePayload) {
			t.Fatalf("parseWelcome(%q) = %d", b, got)
		}
		js := fmt.Appendf(nil, `{"maxPayload":%d}`, n)
		got, err := parseWelcome(js)
		switch {
		case n < 1:
			if err == nil {
				t.Fatalf("parseWelcome(%s) = %d, want an error", js, got)
			}
		case err != nil || int64(got) != min(n, maxWelcomePayload):
			t.Fatalf("parseWelcome(%s) = %d, %v", js, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), errWelcome.Error()) {
			t.Fatalf("error %v does not say it is the welcome", err)
		}
	})
}
