// Command ipc measures berth's IPC hub (package ipchub) against NATS, on
// loopback, with 64-byte messages (issue 11):
//
//   - fan-out: one peer broadcasts to 16 others (berth: a plain frame to
//     its group; NATS: one subject the 16 subscribe to);
//   - pairs: 16 peers each send to one other, the next in a ring (berth:
//     "to:ID;" frames; NATS: each peer's own subject).
//
// Each peer is its own connection: for berth, a real WebSocket speaking the
// hub protocol to an ipchub.Server served in this process on a loopback
// port; for NATS, the Go client to a nats-server given by -nats (bench/ipc.sh
// starts one). Senders and receivers run in this process, so they share a
// clock: each message carries the time its sender handed it to the client,
// and its receiver takes the difference on receipt (the hop).
//
// Every scenario runs twice on each bus, each time on fresh connections:
//
//  1. throughput, closed loop: every sender sends as fast as it can while
//     staying at most -inflight messages ahead of its slowest receiver
//     (below the hub's 256-frame send queue, so no receiver is overrun);
//     the delivered rate is counted over -window after -warmup;
//  2. latency, open loop: the senders are paced at a fixed delivered rate,
//     the same on both buses, first -rate (20,000 deliveries/s), then -load
//     times the slower bus's throughput from step 1 (half); p50 and p99 are
//     of the messages sent during the window.
//
// Every send loop is bounded by -max messages and by the window's end; a
// phase ends at the latest -drain after its window. Run it through
// bench/ipc.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	o := defaultOptions()
	flag.StringVar(&o.natsURL, "nats", "", "URL of a NATS server on loopback (bench/ipc.sh starts one)")
	flag.IntVar(&o.natsPID, "nats-pid", 0, "pid of that server, to count its CPU time (0: not counted)")
	flag.StringVar(&o.only, "only", "", "measure only berth or only nats")
	flag.StringVar(&o.client, "client", o.client, "berth clients' writes: coalesce (a flusher goroutine, as nats.go has) or each (a write(2) per message, coder/websocket's own)")
	flag.StringVar(&o.scenario, "scenario", "", "run only fanout or only pairs")
	flag.IntVar(&o.fanout, "fanout", o.fanout, "receivers of the fan-out")
	flag.IntVar(&o.pairs, "pairs", o.pairs, "peers of the pairs scenario")
	flag.DurationVar(&o.warmup, "warmup", o.warmup, "load before each window, not measured")
	flag.DurationVar(&o.window, "window", o.window, "measured time of each phase")
	flag.Int64Var(&o.inflight, "inflight", o.inflight, "messages a sender may be ahead of its slowest receiver")
	flag.Float64Var(&o.rate, "rate", o.rate, "first latency phase: paced rate in deliveries/s (0: none)")
	flag.Float64Var(&o.load, "load", o.load, "second latency phase: paced rate as a fraction of the slower bus's throughput (0: none)")
	flag.Int64Var(&o.maxMsgs, "max", o.maxMsgs, "messages per sender and phase, at most")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of berth's throughput phases here (hub and clients; the clients' goroutines carry the label side=client)")
	flag.DurationVar(&o.timeout, "timeout", o.timeout, "bound of the whole run")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "ipc:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r, err := run(ctx, o)
	if r != nil {
		r.print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipc:", err)
		os.Exit(1)
	}
}

type options struct {
	natsURL       string
	natsPID       int
	only          string
	scenario      string
	client        string
	fanout, pairs int
	warmup        time.Duration
	window        time.Duration
	inflight      int64
	load, rate    float64
	maxMsgs       int64
	drain         time.Duration
	cpuprofile    string
	timeout       time.Duration
	logf          func(format string, args ...any) // progress; nil prints to stderr
}

func defaultOptions() options {
	return options{client: "coalesce", fanout: 16, pairs: 16, warmup: time.Second, window: 3 * time.Second, inflight: 128,
		rate: 20000, load: 0.5, maxMsgs: 50_000_000, drain: 3 * time.Second, timeout: 5 * time.Minute}
}

func (o options) check() error {
	switch {
	case o.only != "" && o.only != "berth" && o.only != "nats":
		return fmt.Errorf("-only %q: want berth or nats", o.only)
	case o.client != "coalesce" && o.client != "each":
		return fmt.Errorf("-client %q: want coalesce or each", o.client)
	case o.scenario != "" && o.scenario != "fanout" && o.scenario != "pairs":
		return fmt.Errorf("-scenario %q: want fanout or pairs", o.scenario)
	case o.only != "berth" && o.natsURL == "":
		return errNoNATS
	case o.fanout < 1 || o.fanout > 1000, o.pairs < 2 || o.pairs > 1000:
		return fmt.Errorf("-fanout %d, -pairs %d: want 1-1000 and 2-1000", o.fanout, o.pairs)
	case o.warmup < 0 || o.window <= 0 || o.window > 5*time.Minute:
		return fmt.Errorf("-warmup %s, -window %s: want a window of at most 5m", o.warmup, o.window)
	case o.inflight < 1 || o.inflight > 200:
		return fmt.Errorf("-inflight %d: want 1-200 (the hub queues 256 frames per peer)", o.inflight)
	case o.load < 0 || o.load > 1, o.rate < 0:
		return fmt.Errorf("-load %g, -rate %g: want a load in [0, 1] and a rate of at least 0", o.load, o.rate)
	case o.maxMsgs < 1, o.timeout <= 0, o.drain <= 0:
		return fmt.Errorf("-max %d, -timeout %s: want positive values", o.maxMsgs, o.timeout)
	}
	return nil
}
