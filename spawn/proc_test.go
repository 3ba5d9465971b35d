package spawn

import (
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// Fields 4..21 and 23..52 of a real stat line around a chosen comm,
	// state and starttime.
	line := func(comm, state, start string) string {
		return "4242 (" + comm + ") " + state + " 1 4242 4242 0 -1 4194560 110 0 0 0 0 0 0 0 20 0 1 0 " +
			start + " 7340032 153 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n"
	}
	tests := []struct {
		name      string
		in        string
		wantState byte
		wantStart uint64
		wantErr   string
	}{
		{"plain", line("sleep", "S", "123456"), 'S', 123456, ""},
		{"spaces and parens", line("a) b) S 1 2 (c", "R", "99"), 'R', 99, ""},
		{"close paren last", line(") ", "Z", "7"), 'Z', 7, ""},
		{"empty comm", line("", "D", "1"), 'D', 1, ""},
		{"no paren", "4242 sleep S 1", 0, 0, "no ')'"},
		{"truncated", "4242 (sleep) S 1 2 3", 0, 0, "fields after comm"},
		{"bad start", line("x", "S", "-5"), 0, 0, "bad starttime"},
		{"bad state", line("x", "SS", "5"), 0, 0, "bad state"},
		{"empty", "", 0, 0, "no ')'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, start, err := parseStat([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state != tt.wantState || start != tt.wantStart {
				t.Errorf("got %c %d, want %c %d", state, start, tt.wantState, tt.wantStart)
			}
		})
	}
}

func TestProcStartTimeMissing(t *testing.T) {
	if _, err := ProcStartTime(-1); err == nil {
		t.Error("no error for pid -1")
	}
}
