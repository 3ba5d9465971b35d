package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"berth/ipchub"
)

// busResult is one bus's two phases of one scenario.
type busResult struct {
	thr  *phaseResult
	lat  map[float64]*phaseResult // by paced rate
	errs []error
}

// report is what a run measured, for print.
type report struct {
	o                    options
	cpus, procs          int
	loadAvg              string
	scenarios            []*scenario
	buses                []string
	res                  map[*scenario]map[string]*busResult
	paced                map[*scenario][]float64 // deliveries/s of the latency phases
	hub                  ipchub.Counters         // berth's counters at the end
	natsCPU, cpuProfiled bool
}

func (r *report) get(sc *scenario, bus string) *busResult {
	if r.res[sc] == nil {
		r.res[sc] = map[string]*busResult{}
	}
	if r.res[sc][bus] == nil {
		r.res[sc][bus] = &busResult{lat: map[float64]*phaseResult{}}
	}
	return r.res[sc][bus]
}

func run(ctx context.Context, o options) (*report, error) {
	logf := o.logf
	if logf == nil {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	r := &report{o: o, cpus: runtime.NumCPU(), procs: runtime.GOMAXPROCS(0), loadAvg: loadAvg(),
		res: map[*scenario]map[string]*busResult{}, paced: map[*scenario][]float64{}}
	for _, sc := range []*scenario{fanout(o.fanout), pairs(o.pairs)} {
		if o.scenario == "" || o.scenario == sc.name {
			r.scenarios = append(r.scenarios, sc)
		}
	}
	c := newClock()
	var buses []bus
	cpu := map[bus]func() time.Duration{}
	var hub *berthBus
	if o.only != "nats" {
		var err error
		if hub, err = startBerth(o.client == "coalesce"); err != nil {
			return nil, fmt.Errorf("start the hub: %w", err)
		}
		defer hub.close()
		buses = append(buses, hub)
		cpu[hub] = selfCPU
	}
	if o.only != "berth" {
		nb := &natsBus{url: o.natsURL}
		buses = append(buses, nb)
		cpu[nb] = selfCPU
		if o.natsPID > 0 {
			if _, err := procCPU(o.natsPID); err != nil {
				return nil, fmt.Errorf("-nats-pid: %w", err)
			}
			r.natsCPU = true
			cpu[nb] = func() time.Duration { d, _ := procCPU(o.natsPID); return selfCPU() + d }
		}
	}
	for _, b := range buses {
		r.buses = append(r.buses, b.name())
	}
	l := load{inflight: o.inflight, warmup: o.warmup, window: o.window, maxMsgs: o.maxMsgs, drain: o.drain}
	phase := func(b bus, sc *scenario, l load, set func(*busResult, *phaseResult)) error {
		logf("%s %s: %s", b.name(), sc.title, map[bool]string{true: fmt.Sprintf("paced at %.0f deliveries/s", l.rate), false: "closed loop"}[l.rate > 0])
		pr, err := runPhase(ctx, b, sc, l, c, cpu[b])
		br := r.get(sc, b.name())
		if pr != nil {
			set(br, pr)
		}
		if err != nil {
			br.errs = append(br.errs, err)
			logf("  %v", err)
		}
		return ctx.Err()
	}

	// 1. Throughput: berth's phases first, one after the other, so that
	// -cpuprofile covers them alone.
	for _, b := range buses {
		stop, err := r.profile(b == hub)
		if err != nil {
			return r, err
		}
		for _, sc := range r.scenarios {
			if err := phase(b, sc, l, func(br *busResult, pr *phaseResult) { br.thr = pr }); err != nil {
				stop()
				return r, err
			}
		}
		stop()
	}
	// 2. Latency, at the same paced rates on every bus: -rate, then -load
	// times the slower bus's throughput.
	for _, sc := range r.scenarios {
		var rates []float64
		if o.rate > 0 {
			rates = append(rates, o.rate)
		}
		if slowest := r.slowest(sc); o.load > 0 && slowest > 0 {
			rates = append(rates, o.load*slowest)
		}
		r.paced[sc] = rates
		for _, rate := range rates {
			for _, b := range buses {
				l := l
				l.rate = rate
				if err := phase(b, sc, l, func(br *busResult, pr *phaseResult) { br.lat[rate] = pr }); err != nil {
					return r, err
				}
			}
		}
	}
	if hub != nil {
		r.hub = hub.hub.Stats()
	}
	var errs []error
	for _, sc := range r.scenarios {
		for _, b := range r.buses {
			errs = append(errs, r.get(sc, b).errs...)
		}
	}
	return r, errors.Join(errs...)
}

// slowest is the lowest throughput of sc on the buses, 0 if none
// delivered.
func (r *report) slowest(sc *scenario) float64 {
	var m float64
	for _, b := range r.buses {
		if t := r.get(sc, b).thr; t != nil && t.rate > 0 && (m == 0 || t.rate < m) {
			m = t.rate
		}
	}
	return m
}

// profile starts the CPU profile when on and -cpuprofile is set; stop ends
// it.
func (r *report) profile(on bool) (stop func(), err error) {
	if !on || r.o.cpuprofile == "" {
		return func() {}, nil
	}
	f, err := os.Create(r.o.cpuprofile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	r.cpuProfiled = true
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
