package lan

import (
	"sync"
	"time"
)

// rateLog lets one log line per key through per interval, and counts the
// lines it held back, so that a client knocking with a wrong token, or a
// master refused again and again, cannot flood the log.
type rateLog struct {
	interval time.Duration

	mu         sync.Mutex // Protects following.
	last       map[string]time.Time
	suppressed map[string]int
}

// rateLogKeys bounds the keys remembered; past it the memory starts over.
const rateLogKeys = 1024

func newRateLog(interval time.Duration) *rateLog {
	return &rateLog{interval: interval, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// allow reports whether a line for key may be logged now and, if so, how
// many were held back since the last one.
func (r *rateLog) allow(key string, now time.Time) (ok bool, held int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, seen := r.last[key]; seen && now.Sub(t) < r.interval {
		r.suppressed[key]++
		return false, 0
	}
	if len(r.last) >= rateLogKeys {
		clear(r.last)
		clear(r.suppressed)
	}
	held = r.suppressed[key]
	delete(r.suppressed, key)
	r.last[key] = now
	return true, held
}
