package portoffice

import "math/bits"

// portSet is a bitmap of the TCP ports 0..65535: 8 KiB, scanned a word at a
// time.
type portSet [(MaxPort + 1) / 64]uint64

func (s *portSet) add(p int)      { s[p>>6] |= 1 << (p & 63) }
func (s *portSet) remove(p int)   { s[p>>6] &^= 1 << (p & 63) }
func (s *portSet) has(p int) bool { return s[p>>6]&(1<<(p&63)) != 0 }

// nextFree returns the lowest port in from..to that is not in s, or -1.
func (s *portSet) nextFree(from, to int) int {
	for from <= to {
		// Free ports of this word at or above from, shifted down to bit 0.
		if w := ^s[from>>6] >> (from & 63); w != 0 {
			if p := from + bits.TrailingZeros64(w); p <= to {
				return p
			}
			return -1
		}
		from = (from | 63) + 1
	}
	return -1
}

// count returns how many ports in from..to are in s.
func (s *portSet) count(from, to int) int {
	n := 0
	for p := from; p <= to; {
		w := s[p>>6] >> (p & 63)
		span := 64 - p&63
		if rest := to - p + 1; rest < span {
			w &= 1<<rest - 1
			span = rest
		}
		n += bits.OnesCount64(w)
		p += span
	}
	return n
}
