package mesh

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
)

// DefaultVirtualNodes is how many points each backend has on the hash
// ring. With v points per backend the share of each of n backends varies by
// about 1/sqrt(v) around 1/n.
const DefaultVirtualNodes = 160

// consistentHash places every candidate at VirtualNodes points of a 64-bit
// ring, hashed from its ID, and a client at the hash of its IP address; the
// client goes to the first point clockwise. Adding or removing one of n
// backends moves only the clients whose next point changes: about 1/n of
// them, all to or from that backend.
type consistentHash struct {
	vnodes int
	ring   atomic.Pointer[ring] // the ring of the last candidate set
}

type ring struct {
	ids    []string
	points []point // sorted by hash
}

type point struct {
	hash uint64
	idx  int // index in ids
}

// NewConsistentHash returns the hash strategy with vnodes points per
// backend (DefaultVirtualNodes when vnodes < 1).
func NewConsistentHash(vnodes int) Strategy {
	if vnodes < 1 {
		vnodes = DefaultVirtualNodes
	}
	return &consistentHash{vnodes: vnodes}
}

func (h *consistentHash) Balance() Balance { return Hash }

func (h *consistentHash) Pick(cands []Candidate, client netip.Addr) int {
	if len(cands) == 0 {
		return -1
	}
	r := h.ring.Load()
	if r == nil || !sameIDs(r.ids, cands) {
		r = buildRing(cands, h.vnodes)
		h.ring.Store(r)
	}
	a := client.Unmap().As16()
	k := mix(fnvSum(a[:]))
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= k })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].idx
}

func sameIDs(ids []string, cands []Candidate) bool {
	if len(ids) != len(cands) {
		return false
	}
	for i, c := range cands {
		if ids[i] != c.ID {
			return false
		}
	}
	return true
}

func buildRing(cands []Candidate, vnodes int) *ring {
	r := &ring{ids: make([]string, len(cands)), points: make([]point, 0, len(cands)*vnodes)}
	for i, c := range cands {
		r.ids[i] = c.ID
		for v := range vnodes {
			r.points = append(r.points, point{mix(fnvSum([]byte(c.ID + "#" + strconv.Itoa(v)))), i})
		}
	}
	// Equal hashes (rare) are ordered by ID, so every master builds the
	// same ring from the same set whatever its order.
	slices.SortFunc(r.points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		switch x, y := r.ids[a.idx], r.ids[b.idx]; {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return r
}

// fnvSum is FNV-1a, 64 bits (hash/fnv's, without its allocation).
func fnvSum(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix is splitmix64's finaliser: FNV alone leaves similar inputs (web.1#0,
// web.1#1) close together on the ring.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
