package mesh

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"
)

// DefaultHeartbeat is how often a child reports stats unless told
// otherwise (child.DefaultHeartbeat).
const DefaultHeartbeat = 10 * time.Second

// staleAfter heartbeats without a report, a backend's stats are unknown.
const staleAfter = 3

// Stats are a backend's latest heartbeat figures, as the resource strategy
// reads them.
type Stats struct {
	CPUPercent float64   // 100 is one core busy
	HeapUsed   uint64    // bytes
	HeapTotal  uint64    // bytes; 0 means no heap figure
	At         time.Time // when the figures were sampled
}

// Candidate is one backend as a strategy sees it: running, and not ejected.
type Candidate struct {
	ID    string
	Conns int64  // live connections through this proxy
	Stats *Stats // the latest report, or nil; never modified
}

// Strategy picks the backend of each new connection. Its methods may be
// called concurrently.
type Strategy interface {
	// Pick returns the index in cands of the backend for a new connection
	// from client, or -1 when cands is empty. It does not keep cands.
	Pick(cands []Candidate, client netip.Addr) int
	// Balance names the strategy.
	Balance() Balance
}

// roundRobin rotates through the candidates by a counter: with a stable
// set, n connections reach each of k backends n/k times, to the one.
type roundRobin struct{ next atomic.Uint64 }

// NewRoundRobin returns the round-robin strategy.
func NewRoundRobin() Strategy { return &roundRobin{} }

func (r *roundRobin) Balance() Balance { return RoundRobin }

func (r *roundRobin) Pick(cands []Candidate, _ netip.Addr) int {
	if len(cands) == 0 {
		return -1
	}
	return int((r.next.Add(1) - 1) % uint64(len(cands)))
}

// leastConn is the power of two choices: of two candidates drawn at
// random, the one with fewer live connections, a coin toss on a tie.
type leastConn struct{}

// NewLeastConn returns the least-connections strategy (power of two
// choices).
func NewLeastConn() Strategy { return leastConn{} }

func (leastConn) Balance() Balance { return LeastConn }

func (leastConn) Pick(cands []Candidate, _ netip.Addr) int {
	n := len(cands)
	switch n {
	case 0:
		return -1
	case 1:
		return 0
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	switch a, b := cands[i].Conns, cands[j].Conns; {
	case a < b:
		return i
	case b < a:
		return j
	case rand.IntN(2) == 0:
		return i
	}
	return j
}

// resourceAware scores each candidate and picks the lowest; ties are
// broken by a rotating counter, so equal backends share the load evenly.
type resourceAware struct {
	w     Weights
	stale time.Duration
	now   func() time.Time
	next  atomic.Uint64
}

// NewResourceAware returns the resource strategy.
func NewResourceAware(opts StrategyOptions) Strategy {
	r := &resourceAware{w: opts.Weights, stale: staleAfter * opts.Heartbeat, now: opts.Now}
	if r.w == (Weights{}) {
		r.w = DefaultWeights
	}
	if opts.Heartbeat <= 0 {
		r.stale = staleAfter * DefaultHeartbeat
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

func (r *resourceAware) Balance() Balance { return Resource }

// Score returns the score of c at now: lower is better. Stats older than
// stale (or from the future by more than stale) are unknown, and a
// candidate with unknown stats is scored by its connections alone.
func Score(c Candidate, w Weights, now time.Time, stale time.Duration) float64 {
	s := float64(c.Conns) * w.Conns
	st := c.Stats
	if st == nil {
		return s
	}
	if age := now.Sub(st.At); age > stale || age < -stale {
		return s
	}
	s += st.CPUPercent * w.CPU
	if st.HeapTotal > 0 {
		s += float64(st.HeapUsed) / float64(st.HeapTotal) * w.Heap
	}
	return s
}

func (r *resourceAware) Pick(cands []Candidate, _ netip.Addr) int {
	if len(cands) == 0 {
		return -1
	}
	now := r.now()
	var (
		best  float64
		ties  int // how many candidates share best
		first int // the index of the first of them
	)
	scores := make([]float64, len(cands))
	for i, c := range cands {
		s := Score(c, r.w, now, r.stale)
		scores[i] = s
		switch {
		case i == 0 || s < best:
			best, ties, first = s, 1, i
		case s == best:
			ties++
		}
	}
	if ties == 1 {
		return first
	}
	k := int((r.next.Add(1) - 1) % uint64(ties))
	for i := first; i < len(cands); i++ {
		if scores[i] == best {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return first // not reached
}
