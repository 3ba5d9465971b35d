package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Goals of issue 11.
const (
	goalRatio = 0.25                 // berth's delivered rate over NATS's, at least
	goalP99   = 2 * time.Millisecond // berth's p99 hop, at most
)

func (r *report) print(w io.Writer) {
	o := r.o
	fmt.Fprintf(w, "IPC: berth's hub (in this process, WebSocket clients) against NATS (nats-server, Go client); %d-byte messages; loopback only.\n", msgSize)
	fmt.Fprintf(w, "Machine: %d CPUs (GOMAXPROCS %d) shared by the hub, nats-server, every client of both and whatever else runs; load average at start %s.\n",
		r.cpus, r.procs, r.loadAvg)
	fmt.Fprintf(w, "Throughput: closed loop, each sender at most %d messages ahead of its slowest receiver; deliveries counted over %s after %s of warm-up.\n",
		o.inflight, o.window, o.warmup)
	pace := fmt.Sprintf("%.0f %% of the slower bus's throughput", o.load*100)
	if o.rate > 0 {
		pace = fmt.Sprintf("%.0f deliveries/s", o.rate)
	}
	fmt.Fprintf(w, "Latency: open loop, senders paced at %s (the same rate on both); hop = receipt − hand-off to the sender's client, one clock; p50/p99 of the messages sent in the window.\n\n", pace)

	fmt.Fprintln(w, "| scenario | berth msgs/s | NATS msgs/s | ratio | berth p50 / p99 | NATS p50 / p99 | paced at |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
	for _, sc := range r.scenarios {
		b, n := r.res[sc]["berth"], r.res[sc]["NATS"]
		ratio := "-"
		if b != nil && n != nil && b.thr != nil && n.thr != nil && n.thr.rate > 0 {
			ratio = fmt.Sprintf("%.2f", b.thr.rate/n.thr.rate)
		}
		paced := "-"
		if p := r.paced[sc]; p > 0 {
			paced = thousands(p) + "/s"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", sc.title, rateOf(b), rateOf(n), ratio, latOf(b), latOf(n), paced)
	}
	fmt.Fprintln(w)
	if len(r.buses) == 2 {
		var ratio, p99 []string
		for _, sc := range r.scenarios {
			b, n := r.res[sc]["berth"], r.res[sc]["NATS"]
			if b != nil && n != nil && b.thr != nil && n.thr != nil && n.thr.rate > 0 {
				x := b.thr.rate / n.thr.rate
				ratio = append(ratio, fmt.Sprintf("%s %s (%.2f)", sc.title, yes(x >= goalRatio), x))
			}
			if b != nil && b.lat != nil {
				p99 = append(p99, fmt.Sprintf("%s %s (%s)", sc.title, yes(b.lat.lat.P99 <= goalP99), ms(b.lat.lat.P99)))
			}
		}
		fmt.Fprintf(w, "Goal, berth delivers at least %.2f× NATS's rate: %s.\n", goalRatio, strings.Join(ratio, ", "))
		fmt.Fprintf(w, "Goal, berth's p99 hop at most %s: %s.\n\n", ms(goalP99), strings.Join(p99, ", "))
	}
	fmt.Fprintln(w, "Details:")
	for _, sc := range r.scenarios {
		for _, bus := range r.buses {
			r.printDetail(w, sc, bus)
		}
	}
	if len(r.res) > 0 && r.o.only != "nats" {
		h := r.hub
		fmt.Fprintf(w, "  hub counters: %s messages, %s drops, %d slow disconnects, %d oversize\n",
			thousands(float64(h.Messages)), thousands(float64(h.Drops)), h.SlowDisconnects, h.Oversize)
	}
	cpuWhat := "this process (the hub and every client)"
	if r.natsCPU {
		cpuWhat += "; for NATS, this process (clients) and nats-server"
	}
	fmt.Fprintf(w, "  CPU: %s.\n", cpuWhat)
	if r.cpuProfiled {
		fmt.Fprintf(w, "  CPU profile of berth's throughput phases: %s (go tool pprof -tagignore side=client leaves the hub and runtime)\n", r.o.cpuprofile)
	}
}

func (r *report) printDetail(w io.Writer, sc *scenario, bus string) {
	br := r.res[sc][bus]
	if br == nil {
		return
	}
	if t := br.thr; t != nil {
		fmt.Fprintf(w, "  %s %s, throughput: %s msgs/s; sent %s, delivered %s of %s; hop under that load p50 %s p99 %s max %s; CPU %s (%s per delivery)\n",
			bus, sc.title, thousands(t.rate), thousands(float64(t.sent)), thousands(float64(t.received)), thousands(float64(t.expected)),
			ms(t.lat.P50), ms(t.lat.P99), ms(t.lat.Max), t.cpu.Round(10*time.Millisecond), perDelivery(t))
	}
	if l := br.lat; l != nil {
		fmt.Fprintf(w, "  %s %s, latency: %s msgs/s delivered; %s hops p50 %s p99 %s max %s; %d sends over 1 ms behind schedule; CPU %s (%s per delivery)\n",
			bus, sc.title, thousands(l.rate), thousands(float64(l.lat.N)), ms(l.lat.P50), ms(l.lat.P99), ms(l.lat.Max), l.late,
			l.cpu.Round(10*time.Millisecond), perDelivery(l))
	}
	for _, p := range []*phaseResult{br.thr, br.lat} {
		if p != nil && p.order > 0 {
			fmt.Fprintf(w, "  %s %s: %d messages out of order\n", bus, sc.title, p.order)
		}
	}
	for _, err := range br.errs {
		fmt.Fprintf(w, "  %s %s: ERROR %v\n", bus, sc.title, err)
	}
}

func perDelivery(p *phaseResult) string {
	if p.delivered == 0 || p.cpu == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f µs", float64(p.cpu.Microseconds())/float64(p.delivered))
}

func rateOf(br *busResult) string {
	if br == nil || br.thr == nil {
		return "-"
	}
	return thousands(br.thr.rate)
}

func latOf(br *busResult) string {
	if br == nil || br.lat == nil || br.lat.lat.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f / %.2f ms", msf(br.lat.lat.P50), msf(br.lat.lat.P99))
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", msf(d)) }

// thousands formats x, rounded, with commas.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
