package child

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// comm may hold spaces and ')'; utime is 1234 and stime 56.
	line := "4242 (my ) prog) S 1 4242 4242 0 -1 4194560 300 0 0 0 1234 56 0 0 20 0 9 0 777 1000000 250 18446744073709551615\n"
	got, err := parseStat([]byte(line))
	if err != nil || got != 1290 {
		t.Errorf("parseStat = %d, %v; want 1290", got, err)
	}
	for _, bad := range []string{"", "4242 (x S 1 2", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 300 0 0 0 u 56 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestParseStatm(t *testing.T) {
	if got, err := parseStatm([]byte("5000 1200 300 10 0 900 0\n")); err != nil || got != 1200 {
		t.Errorf("parseStatm = %d, %v; want 1200", got, err)
	}
	for _, bad := range []string{"", "5000", "5000 x"} {
		if _, err := parseStatm([]byte(bad)); err == nil {
			t.Errorf("parseStatm(%q) succeeded", bad)
		}
	}
}

func TestSampler(t *testing.T) {
	s := newSampler(7)
	start, err := cpuTicks()
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel has charged at least a tick.
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; n++ {
		if ticks, _ := cpuTicks(); ticks > start {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("CPU time did not advance")
		}
	}
	st := s.sample()
	if st.PID != 7 || st.CPUPercent <= 0 || st.RSS == 0 || st.HeapUsed == 0 || st.HeapTotal < st.HeapUsed || st.SampledAt.IsZero() {
		t.Errorf("sample = %+v", st)
	}
	if err := st.Validate(); err != nil {
		t.Errorf("sample does not validate: %v", err)
	}
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{backoffMin, time.Second, backoffMax} {
		for range 1000 {
			if j := jitter(d); j < d*4/5 || j >= d*6/5 {
				t.Fatalf("jitter(%v) = %v, outside ±20%%", d, j)
			}
		}
	}
}
