package main

import "fmt"

// scenario says who sends to whom. Peers are numbered from 0; each is one
// connection to the bus, which may send, receive or both.
type scenario struct {
	name  string // short, for group and subject names
	title string // for the table
	peers int
	// dests[p] are the peers that each message of p reaches; empty for a
	// peer that does not send.
	dests [][]int
	// broadcast: the sender's message goes to every other peer (berth: a
	// plain frame; NATS: one subject all receivers subscribe to). Otherwise
	// each sender has exactly one destination (berth: "to:ID;"; NATS: the
	// destination's own subject).
	broadcast bool
}

// fanout is one sender (peer 0) broadcasting to n receivers.
func fanout(n int) *scenario {
	sc := &scenario{name: "fanout", title: fmt.Sprintf("fan-out 1→%d", n), peers: n + 1, dests: make([][]int, n+1), broadcast: true}
	for r := 1; r <= n; r++ {
		sc.dests[0] = append(sc.dests[0], r)
	}
	return sc
}

// pairs is n peers, each sending to the next one (the last to the first).
func pairs(n int) *scenario {
	sc := &scenario{name: "pairs", title: fmt.Sprintf("%d peers → 1 other", n), peers: n, dests: make([][]int, n)}
	for p := range n {
		sc.dests[p] = []int{(p + 1) % n}
	}
	return sc
}

// senders returns the peers that send.
func (sc *scenario) senders() []int {
	var out []int
	for p, d := range sc.dests {
		if len(d) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// receives reports whether peer p is a destination of some sender.
func (sc *scenario) receives(p int) bool {
	for _, d := range sc.dests {
		for _, r := range d {
			if r == p {
				return true
			}
		}
	}
	return false
}

// fanOut is the number of deliveries of one message.
func (sc *scenario) fanOut() int {
	for _, d := range sc.dests {
		if len(d) > 0 {
			return len(d)
		}
	}
	return 0
}
