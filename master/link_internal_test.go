package master

import (
	"testing"
	"time"

	"berth/pipes"
)

// TestLinkTimes: a welcome's heartbeat and TTL are used when sane; missing
// or out-of-range values (which would overflow a time.Duration into a
// negative ticker interval and crash the master) fall back to the defaults,
// and the heartbeat always stays below the TTL.
func TestLinkTimes(t *testing.T) {
	for _, tc := range []struct {
		w             pipes.Welcome
		wantHB, wantT time.Duration
	}{
		{pipes.Welcome{}, DefaultHeartbeat, DefaultLinkTTL},
		{pipes.Welcome{HeartbeatMS: 200, TTLMS: 1000}, 200 * time.Millisecond, time.Second},
		{pipes.Welcome{HeartbeatMS: 1000, TTLMS: 9_300_000_000_000}, time.Second, DefaultLinkTTL},
		{pipes.Welcome{HeartbeatMS: 9_300_000_000_000, TTLMS: 3000}, time.Second, 3 * time.Second},
		{pipes.Welcome{HeartbeatMS: -5, TTLMS: -5}, DefaultHeartbeat, DefaultLinkTTL},
		{pipes.Welcome{HeartbeatMS: 900, TTLMS: 600}, 200 * time.Millisecond, 600 * time.Millisecond},
	} {
		hb, ttl := linkTimes(tc.w)
		if hb != tc.wantHB || ttl != tc.wantT {
			t.Errorf("linkTimes(%+v) = %s, %s; want %s, %s", tc.w, hb, ttl, tc.wantHB, tc.wantT)
		}
		if hb <= 0 || hb >= ttl {
			t.Errorf("linkTimes(%+v): heartbeat %s not in (0, ttl %s)", tc.w, hb, ttl)
		}
	}
}
