package master

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"berth/needs"
	"berth/portoffice"
)

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		lo, hi  int
		wantErr string
	}{
		{"32768\t60999\n", 32768, 60999, ""},
		{"1024 65535", 1024, 65535, ""},
		{"  40000   40000  \n", 40000, 40000, ""},
		{"", 0, 0, "two ports"},
		{"32768\n", 0, 0, "two ports"},
		{"1 2 3", 0, 0, "two ports"},
		{"x 60999", 0, 0, "first port"},
		{"0 60999", 0, 0, "first port"},
		{"32768 70000", 0, 0, "second port"},
		{"32768 -1", 0, 0, "second port"},
		{"60999 32768", 0, 0, "ends before"},
	}
	for _, tt := range tests {
		lo, hi, err := parsePortRange([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parsePortRange(%q) = %d, %d, %v; want an error with %q", tt.in, lo, hi, err, tt.wantErr)
			}
			continue
		}
		if err != nil || lo != tt.lo || hi != tt.hi {
			t.Errorf("parsePortRange(%q) = %d, %d, %v; want %d, %d", tt.in, lo, hi, err, tt.lo, tt.hi)
		}
	}
}

func TestEphemeralOverlaps(t *testing.T) {
	r := func(start, size int) portoffice.Range { return portoffice.Range{Start: start, Size: size} }
	defaults := map[needs.Protocol]portoffice.Range{needs.TCP: r(15000, 1000), needs.HTTP: r(16000, 1000), needs.WS: r(17000, 1000)}
	tests := []struct {
		name   string
		ranges map[needs.Protocol]portoffice.Range
		lo, hi int
		want   []needs.Protocol
	}{
		{"defaults below the kernel's", defaults, 32768, 60999, nil},
		{"kernel range lowered", defaults, 16500, 60999, []needs.Protocol{needs.HTTP, needs.WS}},
		{"touching the last port", map[needs.Protocol]portoffice.Range{needs.TCP: r(32000, 769)}, 32768, 60999, []needs.Protocol{needs.TCP}},
		{"ending just below", map[needs.Protocol]portoffice.Range{needs.TCP: r(32000, 768)}, 32768, 60999, nil},
		{"starting at the last ephemeral port", map[needs.Protocol]portoffice.Range{needs.WS: r(60999, 10)}, 32768, 60999, []needs.Protocol{needs.WS}},
		{"above", map[needs.Protocol]portoffice.Range{needs.WS: r(61000, 10)}, 32768, 60999, nil},
		{"inside", map[needs.Protocol]portoffice.Range{needs.HTTP: r(40000, 10), needs.TCP: r(1000, 10)}, 32768, 60999, []needs.Protocol{needs.HTTP}},
		{"covering", map[needs.Protocol]portoffice.Range{needs.TCP: r(30000, 35000)}, 32768, 60999, []needs.Protocol{needs.TCP}},
	}
	for _, tt := range tests {
		if got := ephemeralOverlaps(tt.ranges, tt.lo, tt.hi); !slices.Equal(got, tt.want) {
			t.Errorf("%s: ephemeralOverlaps = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestWarnEphemeral: the warning names the protocol, its range and the
// kernel's range; a range clear of it gets none.
func TestWarnEphemeral(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ip_local_port_range")
	if err := os.WriteFile(path, []byte("16500\t60999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	office, err := portoffice.Open(filepath.Join(t.TempDir(), "ports.db"), portoffice.Options{
		Ranges: map[needs.Protocol]portoffice.Range{needs.TCP: {Start: 15000, Size: 100}, needs.HTTP: {Start: 16000, Size: 1000}},
		Probe:  func(string, int) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer office.Close()
	var buf bytes.Buffer
	a := &Agent{office: office, log: slog.New(slog.NewTextHandler(&buf, nil))}
	a.warnEphemeral(path)
	out := buf.String()
	for _, want := range []string{"level=WARN", "proto=http", "range=16000-16999", "ephemeral=16500-60999"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "proto=tcp") {
		t.Errorf("log %q warns about tcp 15000-15099, which is clear of the kernel's range", out)
	}

	buf.Reset()
	os.WriteFile(path, []byte("garbage"), 0o600)
	a.warnEphemeral(path)
	if !strings.Contains(buf.String(), "cannot parse") {
		t.Errorf("bad file: log %q, want a warning that it cannot be parsed", buf.String())
	}
}
