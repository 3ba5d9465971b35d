package mesh

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Balance names a strategy, as written in `need add --balance`.
type Balance string

// The strategies.
const (
	RoundRobin Balance = "round-robin"
	LeastConn  Balance = "least-conn"
	Resource   Balance = "resource"
	Hash       Balance = "hash"
)

// Balances lists every strategy, the default first.
var Balances = []Balance{RoundRobin, LeastConn, Resource, Hash}

// ParseBalance returns the strategy named s; the empty string is the
// default, RoundRobin. Any other name is a *ParseError wrapping
// ErrUnknownBalance that lists the names it knows.
func ParseBalance(s string) (Balance, error) {
	if s == "" {
		return RoundRobin, nil
	}
	for _, b := range Balances {
		if string(b) == s {
			return b, nil
		}
	}
	return "", &ParseError{Value: s, Bad: s, Err: ErrUnknownBalance,
		Why: "want round-robin, least-conn, resource or hash"}
}

// Weights are the factors of the resource score:
//
//	score = connections×Conns + cpu%×CPU + (heapUsed/heapTotal)×Heap
type Weights struct {
	Conns float64 `json:"conns"`
	CPU   float64 `json:"cpu"`
	Heap  float64 `json:"heap"`
}

// DefaultWeights are defuss-express's.
var DefaultWeights = Weights{Conns: 10, CPU: 2, Heap: 100}

// maxWeight bounds a weight so that no score overflows to +Inf.
const maxWeight = 1e6

// ParseWeights reads "conns=10,cpu=2,heap=100". Keys may come in any order
// and be left out (a missing key keeps its default); each may appear once.
// A weight is a finite number from 0 to 1e6. The empty string is
// DefaultWeights. Errors are a *ParseError wrapping ErrBadWeights naming
// the bad item.
func ParseWeights(s string) (Weights, error) {
	w := DefaultWeights
	if strings.TrimSpace(s) == "" {
		return w, nil
	}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		bad := func(why string) (Weights, error) {
			return Weights{}, &ParseError{Value: s, Bad: item, Err: ErrBadWeights, Why: why}
		}
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return bad("want key=number")
		}
		key = strings.TrimSpace(key)
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > maxWeight {
			return bad("want a number from 0 to 1e6")
		}
		if seen[key] {
			return bad("given twice")
		}
		seen[key] = true
		switch key {
		case "conns":
			w.Conns = f
		case "cpu":
			w.CPU = f
		case "heap":
			w.Heap = f
		default:
			return bad("want conns, cpu or heap")
		}
	}
	return w, nil
}

// String writes w in the form ParseWeights reads.
func (w Weights) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return "conns=" + f(w.Conns) + ",cpu=" + f(w.CPU) + ",heap=" + f(w.Heap)
}

// StrategyOptions configure NewStrategy. The zero value is usable.
type StrategyOptions struct {
	// Weights of the resource score; zero means DefaultWeights.
	Weights Weights
	// Heartbeat is how often backends report stats (DefaultHeartbeat when
	// zero); stats older than three of them are unknown.
	Heartbeat time.Duration
	// VirtualNodes per backend on the hash ring (DefaultVirtualNodes when
	// zero).
	VirtualNodes int
	// Now is the clock of the resource strategy (time.Now when nil).
	Now func() time.Time
}

// NewStrategy returns a new strategy of kind b.
func NewStrategy(b Balance, opts StrategyOptions) (Strategy, error) {
	switch b {
	case RoundRobin, "":
		return NewRoundRobin(), nil
	case LeastConn:
		return NewLeastConn(), nil
	case Resource:
		return NewResourceAware(opts), nil
	case Hash:
		return NewConsistentHash(opts.VirtualNodes), nil
	}
	return nil, &ParseError{Value: string(b), Bad: string(b), Err: ErrUnknownBalance}
}
