package needs_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"berth/needs"
)

func TestParseByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want needs.ByteSize
		err  string
	}{
		{"0", 0, ""},
		{"100", 100, ""},
		{"100B", 100, ""},
		{"512Ki", 512 << 10, ""},
		{"512KiB", 512 << 10, ""},
		{"256M", 256 << 20, ""},
		{"256m", 256 << 20, ""},
		{"256MB", 256 << 20, ""},
		{"1G", 1 << 30, ""},
		{"1gi", 1 << 30, ""},
		{"2T", 2 << 40, ""},
		{"1P", 1 << 50, ""},
		{"", 0, "empty"},
		{"M", 0, "whole number"},
		{"-1M", 0, "whole number"},
		{"1.5G", 0, "unknown unit"},
		{"256 M", 0, "unknown unit"},
		{"256X", 0, "unknown unit"},
		{"256i", 0, "unknown unit"},
		{"256iB", 0, "unknown unit"},
		{"8192P", 0, "out of range"},
		{"99999999999999999999", 0, "out of range"},
	} {
		got, err := needs.ParseByteSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseByteSize(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for _, tt := range []struct {
		in   needs.ByteSize
		want string
	}{{0, "0"}, {100, "100"}, {256 << 20, "256M"}, {1536 << 10, "1536K"}, {1 << 30, "1G"}, {3 << 50, "3P"}} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := needs.ParseByteSize(tt.want)
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.want, back, err, tt.in)
		}
	}
}

func TestLimitsJSON(t *testing.T) {
	var n needs.Need
	err := json.Unmarshal([]byte(`{"name":"a","command":["x"],"limits":{"memory":"256M","cpus":0.5,"pids":200}}`), &n)
	if err != nil {
		t.Fatal(err)
	}
	if want := (needs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 200}); n.Limits == nil || *n.Limits != want {
		t.Fatalf("limits = %+v, want %+v", n.Limits, want)
	}
	b, err := json.Marshal(n.Limits)
	if err != nil || string(b) != `{"memory":"256M","cpus":0.5,"pids":200}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"memory":1048576}`), n.Limits); err != nil || n.Limits.Memory != 1<<20 {
		t.Fatalf("a number of bytes: %+v, %v", n.Limits, err)
	}
	for _, bad := range []string{`{"memory":"lots"}`, `{"memory":-1}`, `{"memory":1.5}`, `{"memory":true}`} {
		err := json.Unmarshal([]byte(`{"name":"a","command":["x"],"limits":`+bad+`}`), &n)
		te, ok := errors.AsType[*json.UnmarshalTypeError](err)
		if !ok || te.Field != "limits.memory" {
			t.Errorf("%s: err = %v, want an UnmarshalTypeError naming limits.memory", bad, err)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, tt := range []struct {
		l     needs.Limits
		field string
	}{
		{needs.Limits{}, ""},
		{needs.Limits{Memory: 1 << 20, CPUs: 0.01, PIDs: 1}, ""},
		{needs.Limits{Memory: needs.MaxMemory, CPUs: needs.MaxCPUs, PIDs: needs.MaxPIDs}, ""},
		{needs.Limits{Memory: 1}, "limits.memory"},
		{needs.Limits{Memory: -5}, "limits.memory"},
		{needs.Limits{Memory: needs.MaxMemory + 1}, "limits.memory"},
		{needs.Limits{CPUs: -1}, "limits.cpus"},
		{needs.Limits{CPUs: 0.001}, "limits.cpus"},
		{needs.Limits{CPUs: 8193}, "limits.cpus"},
		{needs.Limits{CPUs: math.NaN()}, "limits.cpus"},
		{needs.Limits{CPUs: math.Inf(1)}, "limits.cpus"},
		{needs.Limits{PIDs: -1}, "limits.pids"},
		{needs.Limits{PIDs: needs.MaxPIDs + 1}, "limits.pids"},
	} {
		n := needs.Need{Name: "a", Command: []string{"x"}, Limits: &tt.l}
		err := n.Validate()
		if tt.field == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.l, err)
			}
			continue
		}
		fe, ok := errors.AsType[*needs.FieldError](err)
		if !ok || fe.Field != tt.field {
			t.Errorf("%+v: err = %v, want a FieldError on %s", tt.l, err, tt.field)
		}
	}
	l := needs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 200}
	if got := l.String(); got != "memory 256M, cpus 0.5, pids 200" {
		t.Errorf("String = %q", got)
	}
	n := needs.Need{Limits: &l}
	c := n.Clone()
	c.Limits.PIDs = 1
	if n.Limits.PIDs != 200 {
		t.Error("Clone shares Limits")
	}
}

// FuzzParseByteSize: sizes come from the command line and the API. The
// parser never panics, takes only what it documents, and what it takes
// prints back to the same size.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"256M", "1G", "512Ki", "100", "1.5G", "", "9223372036854775807", "8P", "1KIB", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := needs.ParseByteSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("%q: error with a size %d", s, n)
			}
			return
		}
		if n < 0 {
			t.Fatalf("%q: negative size %d", s, n)
		}
		back, err := needs.ParseByteSize(n.String())
		if err != nil || back != n {
			t.Fatalf("%q = %d prints as %q, which reads back as %d, %v", s, n, n.String(), back, err)
		}
		var j needs.ByteSize
		b, _ := json.Marshal(n)
		if err := json.Unmarshal(b, &j); err != nil || j != n {
			t.Fatalf("%q: JSON %s reads back as %d, %v", s, b, j, err)
		}
	})
}
