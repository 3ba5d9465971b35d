package main

import (
	"math/bits"
	"time"
)

// subBits sets the histogram's resolution: 2^subBits buckets per power of
// two, so a percentile read from it is within 1/128 (0.8 %) of the sample.
const subBits = 7

// hist is a log-linear histogram of nanosecond durations, of fixed size
// whatever the number of samples. It is not safe for concurrent use: each
// receiving peer has its own, merged after the phase.
type hist struct {
	counts [(64 - subBits + 1) << subBits]uint64
	n      uint64
	max    int64
}

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 1 // e >= subBits
	sub := int(uint64(v)>>(e-subBits)) & (1<<subBits - 1)
	return (e-subBits+1)<<subBits + sub
}

// bucketMid is the middle of bucket i's range.
func bucketMid(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits + subBits - 1
	sub := int64(i & (1<<subBits - 1))
	lo := (1<<subBits + sub) << (e - subBits)
	return lo + (int64(1)<<(e-subBits))/2
}

func (h *hist) record(d int64) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1): the smallest bucket that at
// least q of the samples do not exceed, as its middle, capped by the maximum.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketMid(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// dist summarises a histogram.
type dist struct {
	N             uint64
	P50, P99, Max time.Duration
}

func (h *hist) dist() dist {
	return dist{N: h.n, P50: h.quantile(0.50), P99: h.quantile(0.99), Max: time.Duration(h.max)}
}
