package portoffice

import (
	"log/slog"
	"testing"

	"berth/needs"
)

// BenchmarkLease leases and releases one http port per iteration with the
// real bind check on 127.0.0.1, with and without an fsync per write.
func BenchmarkLease(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			r := freeBlock(b, 40000, 50000, 100)
			o := MustOpenOffice(b, tempPath(b), Options{
				Ranges: map[needs.Protocol]Range{needs.HTTP: r},
				Host:   "127.0.0.1",
				NoSync: bc.noSync,
			})
			protos := []needs.Protocol{needs.HTTP}
			for b.Loop() {
				if _, err := o.Lease("bench", protos); err != nil {
					b.Fatal(err)
				}
				if _, err := o.Release("bench"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leases/s")
		})
	}
}

// BenchmarkLeaseQuarantined is BenchmarkLease/nosync with the first 100
// ports of the range in quarantine: Lease skips them without probing.
func BenchmarkLeaseQuarantined(b *testing.B) {
	r := freeBlock(b, 40000, 50000, 200)
	o := MustOpenOffice(b, tempPath(b), Options{
		Ranges: map[needs.Protocol]Range{needs.HTTP: r},
		Host:   "127.0.0.1",
		NoSync: true,
		Logger: slog.New(slog.DiscardHandler), // 100 quarantine warnings
	})
	for p := r.Start; p < r.Start+100; p++ {
		if _, err := o.Quarantine(needs.HTTP, p, "benchmark"); err != nil {
			b.Fatal(err)
		}
	}
	protos := []needs.Protocol{needs.HTTP}
	for b.Loop() {
		got, err := o.Lease("bench", protos)
		if err != nil {
			b.Fatal(err)
		}
		if got[needs.HTTP] != r.Start+100 {
			b.Fatalf("leased %d, want %d", got[needs.HTTP], r.Start+100)
		}
		if _, err := o.Release("bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leases/s")
}
