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
	fmt.Fprintf(w, "berth's clients: coder/websocket, writes %s.\n",
		map[string]string{"coalesce": "coalesced by a flusher goroutine as nats.go does (-client coalesce)", "each": "one write(2) per message (-client each)"}[o.client])
	fmt.Fprintf(w, "Throughput: closed loop, each sender at most %d messages ahead of its slowest receiver; deliveries counted over %s after %s of warm-up.\n",
		o.inflight, o.window, o.warmup)
	var pace []string
	if o.rate > 0 {
		pace = append(pace, fmt.Sprintf("%s deliveries/s", thousands(o.rate)))
	}
	if o.load > 0 {
		pace = append(pace, fmt.Sprintf("%.0f %% of the slower bus's throughput", o.load*100))
	}
	fmt.Fprintf(w, "Latency: open loop, senders paced at %s (the same rate on both buses); hop = receipt − hand-off to the sender's client, one clock; p50/p99 of the messages sent in the window.\n\n",
		strings.Join(pace, ", then "))

	fmt.Fprintln(w, "| scenario | berth msgs/s | NATS msgs/s | ratio | berth p50 / p99 | NATS p50 / p99 | paced at |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
	for _, sc := range r.scenarios {
		b, n := r.res[sc]["berth"], r.res[sc]["NATS"]
		ratio := "-"
		if x, ok := r.ratio(sc); ok {
			ratio = fmt.Sprintf("%.2f", x)
		}
		rates := r.paced[sc]
		if len(rates) == 0 {
			rates = []float64{0}
		}
		for i, rate := range rates {
			title, br, nr, rt := sc.title, rateOf(b), rateOf(n), ratio
			if i > 0 {
				title, br, nr, rt = "", "", "", ""
			}
			paced := "-"
			if rate > 0 {
				paced = thousands(rate) + "/s"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", title, br, nr, rt, latOf(b, rate), latOf(n, rate), paced)
		}
	}
	fmt.Fprintln(w)
	if len(r.buses) == 2 {
		var ratio []string
		for _, sc := range r.scenarios {
			if x, ok := r.ratio(sc); ok {
				ratio = append(ratio, fmt.Sprintf("%s %s (%.2f)", sc.title, yes(x >= goalRatio), x))
			}
		}
		fmt.Fprintf(w, "Goal, berth delivers at least %.2f× NATS's rate: %s.\n", goalRatio, strings.Join(ratio, ", "))
	}
	for _, sc := range r.scenarios {
		b := r.res[sc]["berth"]
		if b == nil {
			continue
		}
		var p99 []string
		for _, rate := range r.paced[sc] {
			if l := b.lat[rate]; l != nil && l.lat.N > 0 {
				p99 = append(p99, fmt.Sprintf("at %s/s %s (%s)", thousands(rate), yes(l.lat.P99 <= goalP99), ms(l.lat.P99)))
			}
		}
		fmt.Fprintf(w, "Goal, berth's p99 hop at most %s, %s: %s.\n", ms(goalP99), sc.title, strings.Join(p99, ", "))
	}
	fmt.Fprintln(w, "\nDetails:")
	for _, sc := range r.scenarios {
		for _, bus := range r.buses {
			r.printDetail(w, sc, bus)
		}
	}
	if len(r.res) > 0 && r.o.only != "nats" {
		h := r.hub
		fmt.Fprintf(w, "  hub counters: %s messages, %s drops (notices to peers leaving at a phase's end included), %d slow disconnects, %d oversize\n",
			thousands(float64(h.Messages)), thousands(float64(h.Drops)), h.SlowDisconnects, h.Oversize)
	}
	cpuWhat := "this process (the hub and every client)"
	if r.natsCPU {
		cpuWhat += "; for NATS, this process (clients) and nats-server"
	}
	fmt.Fprintf(w, "  CPU: %s, over the window.\n", cpuWhat)
	if r.cpuProfiled {
		fmt.Fprintf(w, "  CPU profile of berth's throughput phases: %s (go tool pprof -tagignore side=client leaves the hub and runtime)\n", r.o.cpuprofile)
	}
}

// ratio is berth's throughput over NATS's in sc.
func (r *report) ratio(sc *scenario) (float64, bool) {
	b, n := r.res[sc]["berth"], r.res[sc]["NATS"]
	if b == nil || n == nil || b.thr == nil || n.thr == nil || n.thr.rate == 0 {
		return 0, false
	}
	return b.thr.rate / n.thr.rate, true
}

func (r *report) printDetail(w io.Writer, sc *scenario, bus string) {
	br := r.res[sc][bus]
	if br == nil {
		return
	}
	phases := []*phaseResult{br.thr}
	if t := br.thr; t != nil {
		fmt.Fprintf(w, "  %s %s, throughput: %s msgs/s; sent %s, delivered %s of %s; hop under that load p50 %s p99 %s max %s; CPU %s (%s per delivery)\n",
			bus, sc.title, thousands(t.rate), thousands(float64(t.sent)), thousands(float64(t.received)), thousands(float64(t.expected)),
			ms(t.lat.P50), ms(t.lat.P99), ms(t.lat.Max), t.cpu.Round(10*time.Millisecond), perDelivery(t))
	}
	for _, rate := range r.paced[sc] {
		l := br.lat[rate]
		if l == nil {
			continue
		}
		phases = append(phases, l)
		fmt.Fprintf(w, "  %s %s, paced at %s/s: %s msgs/s delivered; %s hops p50 %s p99 %s max %s; %d sends over %s behind schedule; CPU %s (%s per delivery)\n",
			bus, sc.title, thousands(rate), thousands(l.rate), thousands(float64(l.lat.N)), ms(l.lat.P50), ms(l.lat.P99), ms(l.lat.Max), l.late, lateBy,
			l.cpu.Round(10*time.Millisecond), perDelivery(l))
	}
	for _, p := range phases {
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

func latOf(br *busResult, rate float64) string {
	if br == nil || br.lat[rate] == nil || br.lat[rate].lat.N == 0 {
		return "-"
	}
	l := br.lat[rate].lat
	return fmt.Sprintf("%.2f / %.2f ms", msf(l.P50), msf(l.P99))
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
