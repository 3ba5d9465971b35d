package main

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	ports, err := pick("2000-2009,2005-2014", "3000-3999:1,4000-4999:0,5000-5999:0.5", r)
	if err != nil {
		t.Fatal(err)
	}
	in := map[int]bool{}
	for _, p := range ports {
		in[p] = true
	}
	for p := 2000; p <= 2014; p++ {
		if !in[p] {
			t.Errorf("port %d of a full span not picked", p)
		}
	}
	half := 0
	for p := 3000; p <= 5999; p++ {
		switch {
		case p < 4000 && !in[p]:
			t.Errorf("port %d of a span sampled at 1 not picked", p)
		case p >= 4000 && p < 5000 && in[p]:
			t.Errorf("port %d of a span sampled at 0 picked", p)
		case p >= 5000 && in[p]:
			half++
		}
	}
	if half < 400 || half > 600 {
		t.Errorf("%d of 1000 ports sampled at 0.5 picked", half)
	}
	if len(ports) != 15+1000+half {
		t.Errorf("%d ports picked, want %d: each once", len(ports), 15+1000+half)
	}
}

func TestPickRefusesBadSpans(t *testing.T) {
	for _, tt := range []struct{ full, sample, want string }{
		{"80-90", "", "1024 <= lo"},
		{"2000-70000", "", "65535"},
		{"3000-2000", "", "3000-2000"},
		{"2000", "", "want lo-hi"},
		{"", "2000-3000", "fraction"},
		{"", "2000-3000:1.5", "fraction"},
		{"", "x-3000:0.5", "want lo-hi"},
	} {
		_, err := pick(tt.full, tt.sample, rand.New(rand.NewPCG(1, 1)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("pick(%q, %q) = %v, want an error containing %q", tt.full, tt.sample, err, tt.want)
		}
	}
}
