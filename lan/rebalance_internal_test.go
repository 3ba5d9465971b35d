package lan

import (
	"reflect"
	"testing"
)

func TestNextMove(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spread map[string]int
		from   string
		to     []string
		ok     bool
	}{
		{"empty", map[string]int{}, "", nil, false},
		{"one master", map[string]int{"m1": 8}, "m1", nil, false},
		{"even", map[string]int{"m1": 3, "m2": 3}, "m1", nil, false},
		{"off by one", map[string]int{"m1": 4, "m2": 3}, "m1", nil, false},
		{"off by one, three masters", map[string]int{"m1": 4, "m2": 3, "m3": 4}, "m1", nil, false},
		{"all on one", map[string]int{"m1": 8, "m2": 0}, "m1", []string{"m2"}, true},
		{"by two", map[string]int{"m1": 1, "m2": 3}, "m2", []string{"m1"}, true},
		{"most loaded first, ties by key", map[string]int{"m1": 2, "m2": 5, "m3": 5, "m4": 0}, "m2", []string{"m4", "m1"}, true},
		{"targets least loaded first", map[string]int{"a": 3, "b": 6, "c": 4, "d": 2}, "b", []string{"d", "a", "c"}, true},
		{"only two fewer qualify", map[string]int{"m1": 5, "m2": 4, "m3": 3}, "m1", []string{"m3"}, true},
	} {
		from, to, ok := nextMove(tt.spread)
		if ok != tt.ok || ok && (from != tt.from || !reflect.DeepEqual(to, tt.to)) || !ok && len(to) != 0 {
			t.Errorf("%s: nextMove(%v) = %q, %v, %v; want %q, %v, %v", tt.name, tt.spread, from, to, ok, tt.from, tt.to, tt.ok)
		}
	}
}

func TestPlanMoves(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spread map[string]int
		want   []Move
	}{
		{"even", map[string]int{"m1": 3, "m2": 3}, []Move{}},
		{"one master", map[string]int{"m1": 3}, []Move{}},
		{"six on one of two", map[string]int{"m1": 6, "m2": 0},
			[]Move{{"m1", "m2"}, {"m1", "m2"}, {"m1", "m2"}}},
		{"seven on one of two: 4/3", map[string]int{"m1": 7, "m2": 0},
			[]Move{{"m1", "m2"}, {"m1", "m2"}, {"m1", "m2"}}},
		{"eight on one of three", map[string]int{"m1": 8, "m2": 0, "m3": 0},
			[]Move{{"m1", "m2"}, {"m1", "m3"}, {"m1", "m2"}, {"m1", "m3"}, {"m1", "m2"}}},
		{"two loaded, one empty", map[string]int{"m1": 4, "m2": 4, "m3": 0},
			[]Move{{"m1", "m3"}, {"m2", "m3"}}},
	} {
		got := planMoves(tt.spread)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: planMoves(%v) = %v, want %v", tt.name, tt.spread, got, tt.want)
		}
		// Applied, the moves leave a spread that differs by at most one.
		after := map[string]int{}
		for k, v := range tt.spread {
			after[k] = v
		}
		for _, m := range got {
			after[m.From]--
			after[m.To]++
		}
		if _, _, ok := nextMove(after); ok {
			t.Errorf("%s: after the plan the spread is %v, still uneven", tt.name, after)
		}
	}
}
