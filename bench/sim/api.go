package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"berth/lan"
)

// API calls the load makes, in turn.
const (
	opList  = "list"  // GET /v1/needs
	opShow  = "show"  // GET /v1/needs/{name}, a need of the run
	opAdd   = "add"   // POST /v1/needs, a probe need of 0 instances
	opScale = "scale" // PATCH /v1/needs/{probe}, to 0 instances
	opRm    = "rm"    // DELETE /v1/needs/{probe}
)

var apiOps = []string{opList, opShow, opAdd, opScale, opRm}

// apiLoad calls the HTTP API one request at a time, one every interval
// (or right after the previous answer, if that took longer), cycling
// through apiOps, and records each call's latency under the phase current
// at its start. A probe need is added, scaled and removed in turn, so the
// number of needs stays put.
type apiLoad struct {
	client *lan.Client
	needs  []string // the run's needs, for show
	// declared is how many of needs are declared: show picks among them,
	// and the load begins once there is one.
	declared atomic.Int64
	interval time.Duration
	maxCalls int

	mu     sync.Mutex // Protects following.
	phase  string
	lat    map[string]map[string][]time.Duration // phase → op → latencies
	errs   []string
	errN   int
	probes int
}

func newAPILoad(addr, token string, needNames []string, interval time.Duration, maxCalls int) *apiLoad {
	return &apiLoad{
		client:   &lan.Client{Addr: addr, Token: token, HTTP: &http.Client{Timeout: time.Minute}},
		needs:    needNames,
		interval: interval,
		maxCalls: maxCalls,
		lat:      map[string]map[string][]time.Duration{},
	}
}

// setDeclared says how many of the run's needs are declared.
func (a *apiLoad) setDeclared(n int64) { a.declared.Store(n) }

// setPhase labels the calls that start from now on.
func (a *apiLoad) setPhase(p string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.phase = p
}

// run calls the API until ctx ends or maxCalls calls were made.
func (a *apiLoad) run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for i := 0; i < a.maxCalls; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.declared.Load() == 0 {
			continue
		}
		op := apiOps[i%len(apiOps)]
		i++
		a.mu.Lock()
		phase := a.phase
		probe := fmt.Sprintf("probe-%d", a.probes)
		if op == opRm {
			a.probes++
		}
		a.mu.Unlock()
		began := time.Now()
		err := a.call(ctx, op, probe)
		took := time.Since(began)
		if ctx.Err() != nil {
			return // cut short by the end of the run: not a figure
		}
		a.record(phase, op, took, err)
	}
}

// call makes one call of op.
func (a *apiLoad) call(ctx context.Context, op, probe string) error {
	var err error
	switch op {
	case opList:
		_, err = a.client.Needs(ctx)
	case opShow:
		_, err = a.client.Need(ctx, a.needs[rand.IntN(int(min(a.declared.Load(), int64(len(a.needs)))))])
	case opAdd:
		zero := 0
		_, err = a.client.AddNeed(ctx, lan.NeedSpec{Name: probe, Command: []string{"/bin/probe"}, Instances: &zero})
	case opScale:
		_, err = a.client.Scale(ctx, probe, 0)
	case opRm:
		err = a.client.RemoveNeed(ctx, probe)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (a *apiLoad) record(phase, op string, took time.Duration, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.errN++
		if len(a.errs) < maxViolations {
			a.errs = append(a.errs, err.Error())
		}
		return
	}
	if a.lat[phase] == nil {
		a.lat[phase] = map[string][]time.Duration{}
	}
	a.lat[phase][op] = append(a.lat[phase][op], took)
}

// stats returns, per phase and op, the latency distribution, and the errors.
func (a *apiLoad) stats() (map[string]map[string]dist, []string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]map[string]dist{}
	for phase, ops := range a.lat {
		out[phase] = map[string]dist{}
		for op, ds := range ops {
			out[phase][op] = distOf(ds)
		}
	}
	return out, slices.Clone(a.errs), a.errN
}

// dist summarises durations.
type dist struct {
	N             int
	P50, P99, Max time.Duration
}

// distOf sorts ds (a copy) and takes its percentiles: the p-th percentile
// is the smallest value that at least p% of the samples do not exceed.
func distOf(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p int) time.Duration { return s[max(0, (len(s)*p+99)/100-1)] }
	return dist{N: len(s), P50: at(50), P99: at(99), Max: s[len(s)-1]}
}
