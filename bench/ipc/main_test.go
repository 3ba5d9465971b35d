package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMsgRoundTrip(t *testing.T) {
	b := make([]byte, msgSize)
	putMsg(b, 1234567890123, 16, 99999)
	stamp, sender, seq, ok := parseMsg(b)
	if !ok || stamp != 1234567890123 || sender != 16 || seq != 99999 {
		t.Fatalf("parseMsg(%q) = %d %d %d %v", b, stamp, sender, seq, ok)
	}
	for _, bad := range []string{"", "connect:bench-01", "welcome:{}", strings.Repeat("z", msgSize)} {
		if _, _, _, ok := parseMsg([]byte(bad)); ok {
			t.Errorf("parseMsg(%q) ok, want not a message", bad)
		}
	}
}

func TestHistQuantile(t *testing.T) {
	var h hist
	for v := int64(1); v <= 10000; v++ {
		h.record(v * 1000) // 1 µs to 10 ms
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d < -c.want/100 || d > c.want/100 {
			t.Errorf("quantile(%g) = %v, want %v within 1 %%", c.q, got, c.want)
		}
	}
	if h.dist().Max != 10*time.Millisecond {
		t.Errorf("max %v", h.dist().Max)
	}
}

// quick is a run short enough for the test suite (under -race too).
func quick(t *testing.T) options {
	o := defaultOptions()
	o.fanout, o.pairs = 4, 4
	o.warmup, o.window, o.drain = 100*time.Millisecond, 300*time.Millisecond, 5*time.Second
	o.rate, o.load = 2000, 0.1
	o.timeout = 2 * time.Minute
	o.logf = t.Logf
	return o
}

// TestBerth runs both scenarios through the hub and checks that every
// message arrived, in order, and that the table has its figures. It judges
// no figure.
func TestBerth(t *testing.T) {
	o := quick(t)
	o.only = "berth"
	r := runQuick(t, o)
	for _, sc := range r.scenarios {
		br := r.res[sc]["berth"]
		if br == nil || br.thr == nil || br.lat[o.rate] == nil || br.lat[o.load*br.thr.rate] == nil {
			t.Fatalf("%s: missing phases: %+v", sc.title, br)
		}
		for _, p := range []*phaseResult{br.thr, br.lat[o.rate], br.lat[o.load*br.thr.rate]} {
			if p.delivered == 0 || p.lost() != 0 || p.order != 0 || p.lat.N == 0 {
				t.Errorf("%s: %+v", sc.title, p)
			}
		}
	}
	// Drops may count notices to peers that are leaving at a phase's end.
	if r.hub.SlowDisconnects != 0 {
		t.Errorf("hub counters %+v: want no slow consumer", r.hub)
	}
}

// TestWithNATS runs both buses, with a nats-server of the machine's on a
// port it picks itself; it skips when there is none (bench/ipc.sh installs
// it).
func TestWithNATS(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("no nats-server on PATH (apt-get install nats-server)")
	}
	dir := t.TempDir()
	srv := exec.Command(bin, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir, "-l", filepath.Join(dir, "log"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
	})
	ports := filepath.Join(dir, "nats-server_"+itoa(srv.Process.Pid)+".ports")
	var url []byte
	for deadline := time.Now().Add(20 * time.Second); url == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(ports)
		url = regexp.MustCompile(`nats://127\.0\.0\.1:[0-9]+`).Find(b)
	}
	if url == nil {
		t.Fatalf("nats-server wrote no port to %s in 20 s", ports)
	}
	o := quick(t)
	o.natsURL, o.natsPID = string(url), srv.Process.Pid
	r := runQuick(t, o)
	var out bytes.Buffer
	r.print(&out)
	t.Log("\n" + out.String())
	for _, want := range []string{"| fan-out 1→4 |", "| 4 peers → 1 other |", "Goal, berth delivers at least"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
}

func runQuick(t *testing.T, o options) *report {
	t.Helper()
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.timeout)
	defer cancel()
	r, err := run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func itoa(n int) string { return strconv.Itoa(n) }
