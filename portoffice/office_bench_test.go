package portoffice

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/freeports"
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
			r := Range{Start: freeports.Block(b, 100), Size: 100}
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
	r := Range{Start: freeports.Block(b, 200), Size: 200}
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

// BenchmarkLeaseConcurrent runs n leasers at once, each leasing one http
// port for an owner of its own and releasing it again, with the real bind
// check on 127.0.0.1 and an fsync per commit, as a master's children do when
// many grants arrive together. It reports leases/s (each lease also
// released) and the p50 and p99 latency of Lease, from the call to the
// port in hand.
func BenchmarkLeaseConcurrent(b *testing.B) {
	for _, n := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("leasers=%d", n), func(b *testing.B) {
			r := Range{Start: freeports.Block(b, 2*n+50), Size: 2*n + 50}
			o := MustOpenOffice(b, tempPath(b), Options{
				Ranges: map[needs.Protocol]Range{needs.HTTP: r},
				Host:   "127.0.0.1",
			})
			protos := []needs.Protocol{needs.HTTP}
			lat := make([][]time.Duration, n)
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range n {
				owner := fmt.Sprintf("bench-%d", w)
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						start := time.Now()
						if _, err := o.Lease(owner, protos); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(start))
						if _, err := o.Release(owner); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			all := slices.Sorted(slices.Values(slices.Concat(lat...)))
			if len(all) == 0 {
				return
			}
			b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "leases/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(all[(len(all)*99)/100].Microseconds()), "p99-µs")
		})
	}
}
