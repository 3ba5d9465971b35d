package mesh_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"berth/mesh"
)

// FuzzParse: ParseBalance and ParseWeights never panic, every error names
// the input and wraps its sentinel, and accepted weights are finite, in
// range, and round-trip through String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "round-robin", "hash", "resource", "conns=10,cpu=2,heap=100",
		"cpu=1e6", "heap=0x10", "cpu=1,cpu=1", "=", ",,", "cpu=Inf", "conns=1e-400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if b, err := mesh.ParseBalance(s); err != nil {
			if !errors.Is(err, mesh.ErrUnknownBalance) || !strings.Contains(err.Error(), "unknown balance") {
				t.Fatalf("ParseBalance(%q): %v", s, err)
			}
		} else if _, err := mesh.NewStrategy(b, mesh.StrategyOptions{}); err != nil {
			t.Fatalf("ParseBalance(%q) = %q, which NewStrategy refuses: %v", s, b, err)
		}
		w, err := mesh.ParseWeights(s)
		if err != nil {
			if !errors.Is(err, mesh.ErrBadWeights) {
				t.Fatalf("ParseWeights(%q): %v does not wrap ErrBadWeights", s, err)
			}
			return
		}
		for _, v := range []float64{w.Conns, w.CPU, w.Heap} {
			if math.IsNaN(v) || v < 0 || v > 1e6 {
				t.Fatalf("ParseWeights(%q) = %+v", s, w)
			}
		}
		if back, err := mesh.ParseWeights(w.String()); err != nil || back != w {
			t.Fatalf("round trip of %+v through %q: %+v, %v", w, w.String(), back, err)
		}
	})
}
