package portoffice

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"berth/needs"
)

func TestValidateRanges(t *testing.T) {
	tests := []struct {
		name      string
		ranges    map[needs.Protocol]Range
		wantField string // "" means valid
		wantMsg   string
	}{
		{"ok", map[needs.Protocol]Range{needs.TCP: {16000, 1000}, needs.HTTP: {17000, 1000}}, "", ""},
		{"ok edges", map[needs.Protocol]Range{needs.TCP: {1, 1}, needs.WS: {65535, 1}}, "", ""},
		{"ok adjacent", map[needs.Protocol]Range{needs.TCP: {100, 10}, needs.HTTP: {110, 10}}, "", ""},
		{"empty", nil, "portranges", "at least one"},
		{"port 0", map[needs.Protocol]Range{needs.HTTP: {0, 10}}, "portrangestart.http", "got 0"},
		{"negative", map[needs.Protocol]Range{needs.HTTP: {-5, 10}}, "portrangestart.http", "got -5"},
		{"start past 65535", map[needs.Protocol]Range{needs.TCP: {65536, 1}}, "portrangestart.tcp", "got 65536"},
		{"end past 65535", map[needs.Protocol]Range{needs.WS: {65000, 537}}, "portrangesize.ws", "size 537"},
		{"huge size", map[needs.Protocol]Range{needs.WS: {65000, 1 << 62}}, "portrangesize.ws", "past 65535"},
		{"size 0", map[needs.Protocol]Range{needs.HTTP: {16000, 0}}, "portrangesize.http", "got 0"},
		{"overlap", map[needs.Protocol]Range{needs.TCP: {16000, 1000}, needs.HTTP: {16999, 10}},
			"portrangestart.http", "http range 16999-17008 overlaps tcp range 16000-16999"},
		{"unknown protocol", map[needs.Protocol]Range{"udp": {16000, 10}}, "portranges", `"udp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRanges(tt.ranges)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("ValidateRanges: %v", err)
				}
				return
			}
			var fe *needs.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateRanges = %v, want a *needs.FieldError", err)
			}
			if fe.Field != tt.wantField || !strings.Contains(fe.Msg, tt.wantMsg) {
				t.Fatalf("ValidateRanges = %q, want field %q and message containing %q", err, tt.wantField, tt.wantMsg)
			}
			if !errors.Is(err, needs.ErrInvalid) {
				t.Fatalf("%v does not match needs.ErrInvalid", err)
			}
		})
	}
}

// TestPortSet compares nextFree and count with a plain []bool.
func TestPortSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s portSet
	model := make([]bool, MaxPort+1)
	// Work near both ends of the port space so the set gets dense there.
	pick := func() int {
		if rng.IntN(2) == 0 {
			return rng.IntN(700)
		}
		return MaxPort - rng.IntN(700)
	}
	for range 5000 {
		p := pick()
		if rng.IntN(3) == 0 {
			s.remove(p)
			model[p] = false
		} else {
			s.add(p)
			model[p] = true
		}
		from := pick()
		to := min(MaxPort, from+rng.IntN(300))
		want, n := -1, 0
		for q := to; q >= from; q-- {
			if model[q] {
				n++
			} else {
				want = q
			}
		}
		if got := s.nextFree(from, to); got != want {
			t.Fatalf("nextFree(%d, %d) = %d, want %d", from, to, got, want)
		}
		if got := s.count(from, to); got != n {
			t.Fatalf("count(%d, %d) = %d, want %d", from, to, got, n)
		}
		if s.has(p) != model[p] {
			t.Fatalf("has(%d) = %v", p, s.has(p))
		}
	}
}
