package ipchub

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseFrame(t *testing.T) {
	for _, tt := range []struct {
		in      string
		kind    kind
		to      string
		payload string
	}{
		{"ping", kindPing, "", ""},
		{"ping ", kindBroadcast, "", "ping "},
		{"pong", kindBroadcast, "", "pong"},
		{"", kindBroadcast, "", ""},
		{`{"type":"x"}`, kindBroadcast, "", `{"type":"x"}`},
		{"to:abcde;hello", kindTo, "abcde", "hello"},
		{"to:abcde;", kindTo, "abcde", ""},
		{"to:abcde;a;b", kindTo, "abcde", "a;b"},
		{"to:all;x", kindAll, "", "x"},
		{"to:abcde", kindMalformed, "", ""},
		{"to:;x", kindMalformed, "", ""},
		{"to:", kindMalformed, "", ""},
		{"TO:abcde;x", kindBroadcast, "", "TO:abcde;x"},
		{"to:\xff\xfe;\xc3\x28", kindTo, "\xff\xfe", "\xc3\x28"},
	} {
		f := parseFrame([]byte(tt.in))
		if f.kind != tt.kind || f.to != tt.to || string(f.payload) != tt.payload {
			t.Errorf("parseFrame(%q) = {%d %q %q}, want {%d %q %q}", tt.in, f.kind, f.to, f.payload, tt.kind, tt.to, tt.payload)
		}
	}
}

// FuzzParseFrame checks that parsing never panics and loses no byte: a
// to: frame rebuilds to its input, a broadcast is its input.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{"ping", "to:abcde;hi", "to:all;x", "to:", "to:;", "to:abc", "hello", "\xff\xfe\xfd",
		"to:" + strings.Repeat("x", 70000) + ";p", "to:" + strings.Repeat("é", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		fr := parseFrame(b)
		switch fr.kind {
		case kindPing:
			if string(in) != "ping" {
				t.Fatalf("ping from %q", in)
			}
		case kindBroadcast:
			if !bytes.Equal(fr.payload, in) || bytes.HasPrefix(in, []byte("to:")) {
				t.Fatalf("broadcast %q from %q", fr.payload, in)
			}
		case kindTo, kindAll:
			to := fr.to
			if fr.kind == kindAll {
				to = "all"
			}
			if to == "" || strings.Contains(to, ";") {
				t.Fatalf("recipient %q from %q", to, in)
			}
			if got := "to:" + to + ";" + string(fr.payload); got != string(in) {
				t.Fatalf("rebuilt %q from %q", got, in)
			}
		case kindMalformed:
			rest, ok := bytes.CutPrefix(in, []byte("to:"))
			if !ok || (bytes.IndexByte(rest, ';') > 0) {
				t.Fatalf("malformed %q", in)
			}
		default:
			t.Fatalf("kind %d", fr.kind)
		}
		if !bytes.Equal(b, in) {
			t.Fatalf("parseFrame changed its input")
		}
	})
}
