package child

import (
	"context"
	"runtime"
	"time"

	"berth/pipes"
)

// DefaultHeartbeat is the interval StartHeartbeat uses when given none.
const DefaultHeartbeat = 10 * time.Second

// StartHeartbeat sends stats every interval (DefaultHeartbeat if <= 0) until
// ctx is done or the Conn is closed. Each beat carries the pid, the CPU use
// since the previous beat, the resident set size, the Go heap (HeapAlloc as
// HeapUsed, HeapSys as HeapTotal) and, if conns is not nil, conns() as the
// number of open connections. Beats that fall while the pipe is down are
// dropped. The goroutine belongs to the Conn: Close waits for it.
// StartHeartbeat after Close does nothing.
func (c *Conn) StartHeartbeat(ctx context.Context, interval time.Duration, conns func() int) {
	if interval <= 0 {
		interval = DefaultHeartbeat
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.wg.Go(func() { c.heartbeat(ctx, interval, conns) })
}

func (c *Conn) heartbeat(ctx context.Context, interval time.Duration, conns func() int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	s := newSampler(c.pid)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		st := s.sample()
		if conns != nil {
			st.Connections = max(conns(), 0)
		}
		c.SendStats(st) // the error is ErrDisconnected or ErrClosed: skip the beat
	}
}

// sampler measures the process; CPU use is the difference between samples.
type sampler struct {
	pid   int
	ticks uint64    // user+system CPU time at the last sample, in clock ticks
	at    time.Time // when ticks was read; zero if it could not be
}

func newSampler(pid int) *sampler {
	s := &sampler{pid: pid}
	if ticks, err := cpuTicks(); err == nil {
		s.ticks, s.at = ticks, time.Now()
	}
	return s
}

// sample returns the figures now. Figures the platform cannot provide are 0.
func (s *sampler) sample() pipes.Stats {
	now := time.Now()
	st := pipes.Stats{PID: s.pid, SampledAt: now}
	if ticks, err := cpuTicks(); err == nil {
		if wall := now.Sub(s.at); !s.at.IsZero() && wall > 0 && ticks >= s.ticks {
			st.CPUPercent = float64(ticks-s.ticks) / clockTicks / wall.Seconds() * 100
		}
		s.ticks, s.at = ticks, now
	}
	st.RSS, _ = rssBytes()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapUsed, st.HeapTotal = ms.HeapAlloc, ms.HeapSys
	return st
}
