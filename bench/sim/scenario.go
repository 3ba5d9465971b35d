package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"berth/lan"
	"berth/needs"
)

// Config sizes a run.
type Config struct {
	Masters   int // simulated masters, each on its own WebSocket link
	Instances int // instances in all, declared as needs of PerNeed instances
	PerNeed   int // instances per need (at most needs.MaxInstances)
	// Protocols are the ports each instance declares; the lanmanager dials
	// each before approving. Empty: no ports, a child is approved when it
	// says ready.
	Protocols []needs.Protocol
	// Lose is how many masters are cut off at once after everything runs;
	// 0 skips that phase. CloseLinks closes their links instead of going
	// silent with the connection up.
	Lose       int
	CloseLinks bool
	// BidCost is how long a simulated master takes to bid (a real one
	// looks the command up and counts its free ports).
	BidCost time.Duration
	// Services: the masters ask for the running set (services frames), as
	// a master with Options.Services does.
	Services bool
	// PortPool is how many loopback listeners answer the port checks.
	PortPool int
	// APIInterval paces the API load (one call at a time); APICalls bounds it.
	APIInterval time.Duration
	APICalls    int
	// APIProcess, if set, is an executable that runs the API load as
	// `APIProcess probe ... APIProcessArgs`, in a process of its own as a
	// user's CLI would; empty runs it in this process, beside the
	// simulated masters.
	APIProcess     string
	APIProcessArgs []string
	// PlaceTimeout bounds the placement phase, RecoverTimeout the
	// recovery after the loss (beyond the TTL).
	PlaceTimeout, RecoverTimeout time.Duration
	// Progress, if set, gets a line every few seconds.
	Progress io.Writer
}

// Validate checks the sizes.
func (c *Config) Validate() error {
	switch {
	case c.Masters < 1:
		return fmt.Errorf("masters %d: want at least 1", c.Masters)
	case c.Instances < 1:
		return fmt.Errorf("instances %d: want at least 1", c.Instances)
	case c.PerNeed < 1 || c.PerNeed > needs.MaxInstances:
		return fmt.Errorf("per-need %d: want 1-%d", c.PerNeed, needs.MaxInstances)
	case c.Lose < 0 || c.Lose >= c.Masters:
		return fmt.Errorf("lose %d: want 0 to masters-1 (%d)", c.Lose, c.Masters-1)
	case c.PortPool < 1:
		return fmt.Errorf("port-pool %d: want at least 1", c.PortPool)
	case c.APIInterval <= 0 || c.APICalls < 0:
		return fmt.Errorf("api-interval %s, api-calls %d: want a positive interval", c.APIInterval, c.APICalls)
	case c.PlaceTimeout <= 0 || c.RecoverTimeout <= 0:
		return fmt.Errorf("place-timeout %s, recover-timeout %s: want positive durations", c.PlaceTimeout, c.RecoverTimeout)
	}
	for _, p := range c.Protocols {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("protocols: %w", err)
		}
	}
	return nil
}

// needNames returns the names of the needs of a run and of all their
// instances.
func (c *Config) needNames() (needNames, instances []string) {
	for i := 0; i*c.PerNeed < c.Instances; i++ {
		name := fmt.Sprintf("sim-%04d", i)
		needNames = append(needNames, name)
		for j := 0; j < min(c.PerNeed, c.Instances-i*c.PerNeed); j++ {
			instances = append(instances, needs.InstanceName(name, j))
		}
	}
	return needNames, instances
}

// Target is the lanmanager a run drives.
type Target struct {
	Addr  string // host:port of its HTTP API
	Token string
	// PID is the process to read usage from; 0 means this process, which
	// then holds the simulated masters too (Shared).
	PID    int
	Shared bool
}

// Phases of a run, as API and event figures are labelled.
const (
	phasePlace = "placement"
	phaseLoss  = "loss"
)

// run is one simulation in progress.
type run struct {
	cfg       Config
	tgt       Target
	rep       *Report
	sim       *shared
	masters   []*simMaster
	client    *lan.Client
	needNames []string
	insts     []string
	began     time.Time
}

// Run connects the masters, declares the needs, waits until every instance
// runs, checks the result, cuts Lose masters off, waits until their
// instances run elsewhere and checks again. It returns the figures and
// what was found wrong; the error is for a run that could not finish.
func Run(ctx context.Context, cfg Config, tgt Target) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ports, err := newPortPool(cfg.PortPool)
	if err != nil {
		return nil, err
	}
	defer ports.Close()
	r := &run{cfg: cfg, tgt: tgt, rep: &Report{Config: cfg, Target: tgt},
		sim:    &shared{ledger: newLedger(), ports: ports, bidCost: cfg.BidCost, services: cfg.Services, failures: &failures{}},
		client: &lan.Client{Addr: tgt.Addr, Token: tgt.Token, HTTP: &http.Client{Timeout: 5 * time.Minute}}}
	r.needNames, r.insts = cfg.needNames()
	defer r.closeMasters()
	err = r.run(ctx)
	r.finish(ports)
	return r.rep, err
}

func (r *run) run(ctx context.Context) error {
	if err := r.connect(ctx); err != nil {
		return err
	}
	ev := newEventWatch(r.tgt.Addr, r.tgt.Token)
	sub, err := ev.dial(ctx)
	if err != nil {
		return fmt.Errorf("subscribe to events: %w", err)
	}
	var api apiProber = newAPILoad(r.tgt.Addr, r.tgt.Token, r.needNames, r.cfg.APIInterval, r.cfg.APICalls)
	if r.cfg.APIProcess != "" {
		if api, err = startProbe(r.cfg.APIProcess, r.cfg.APIProcessArgs, r.tgt.Addr, r.tgt.Token, r.needNames,
			r.cfg.APIInterval, r.cfg.APICalls); err != nil {
			sub.CloseNow()
			return err
		}
	}
	ev.setPhase(phasePlace)
	api.setPhase(phasePlace)
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { ev.run(lctx, sub) })
	wg.Go(func() { api.run(lctx) })
	defer func() {
		stopLoad()
		wg.Wait()
		r.rep.API, r.rep.APIErrors, r.rep.APIErrorCount = api.stats()
		r.rep.Events, r.rep.EventDrops, r.rep.EventErr = ev.stats()
	}()
	if err := r.place(ctx, api.setDeclared); err != nil {
		return err
	}
	if r.cfg.Lose == 0 {
		return nil
	}
	ev.setPhase(phaseLoss)
	api.setPhase(phaseLoss)
	return r.lose(ctx)
}

// connect dials every master, 32 at a time.
func (r *run) connect(ctx context.Context) error {
	began := time.Now()
	url := "ws://" + r.tgt.Addr + "/v1/link"
	r.masters = make([]*simMaster, r.cfg.Masters)
	sem := make(chan struct{}, 32)
	var mu sync.Mutex // Protects following.
	var first error
	failed := 0
	var wg sync.WaitGroup
	for i := range r.masters {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			m, err := dialMaster(dctx, url, r.tgt.Token, i, r.sim)
			mu.Lock()
			defer mu.Unlock()
			r.masters[i] = m
			if err != nil {
				failed++
				first = cmp.Or(first, err)
			}
		})
	}
	wg.Wait()
	r.rep.Connect = time.Since(began)
	if first != nil {
		return fmt.Errorf("connect %d masters: %d failed, one with: %w", r.cfg.Masters, failed, first)
	}
	r.rep.TTL = r.masters[0].ttl
	r.progress("%d masters connected in %s", r.cfg.Masters, r.rep.Connect.Round(time.Millisecond))
	return nil
}

// place declares the needs, counting them in declared, and waits until
// every instance runs.
func (r *run) place(ctx context.Context, declared func(int64)) error {
	r.rep.Before = r.usage()
	r.began = time.Now()
	// Instances run while the needs are still being declared (at full
	// size, the declarations take nearly all of the placement): the marks
	// are watched from the start, every 200 ms while declaring (a count
	// walks the whole ledger under its lock), every 20 ms after.
	marks := []int{10, 50, 90}
	seen := func(done, total int) {
		for len(marks) > 0 && done*100 >= marks[0]*total {
			r.rep.Marks = append(r.rep.Marks, mark{Percent: marks[0], At: time.Since(r.began)})
			marks = marks[1:]
		}
	}
	var watch sync.WaitGroup
	declaring := make(chan struct{})
	stop := declaring
	watch.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				seen(r.sim.ledger.running(r.insts), len(r.insts))
			}
		}
	})
	stopWatch := func() {
		if declaring != nil {
			close(declaring)
			declaring = nil
			watch.Wait()
		}
	}
	defer stopWatch()
	for i, name := range r.needNames {
		n := min(r.cfg.PerNeed, r.cfg.Instances-i*r.cfg.PerNeed)
		if _, err := r.client.AddNeed(ctx, lan.NeedSpec{Name: name, Command: []string{"/bin/sim"}, Instances: &n,
			Protocols: r.cfg.Protocols}); err != nil {
			return fmt.Errorf("declare need %s: %w", name, err)
		}
		declared(int64(i + 1))
	}
	r.rep.Declare = time.Since(r.began)
	r.progress("%d needs declared in %s", len(r.needNames), r.rep.Declare.Round(time.Millisecond))
	stopWatch()
	err := r.wait(ctx, r.cfg.PlaceTimeout, "placement", func() (int, int) { return r.sim.ledger.running(r.insts), len(r.insts) }, seen)
	if err != nil {
		return err
	}
	r.rep.Place = time.Since(r.began)
	r.rep.Placed = r.usage()
	r.rep.PlaceGrants, _, _ = r.sim.ledger.counts()
	r.check(ctx, "after placement")
	return nil
}

// lose cuts Lose masters off at once and waits until their instances run
// elsewhere.
func (r *run) lose(ctx context.Context) error {
	var names []string
	for _, m := range r.masters[:r.cfg.Lose] {
		names = append(names, m.name)
	}
	held := r.sim.ledger.lose(names)
	r.rep.LostInstances = len(held)
	r.rep.Cut = r.usage()
	began := time.Now()
	for _, m := range r.masters[:r.cfg.Lose] {
		m.cut(r.cfg.CloseLinks)
	}
	r.progress("%d masters cut off, holding %d instances", len(names), len(held))
	err := r.wait(ctx, r.rep.TTL+r.cfg.RecoverTimeout, "recovery", func() (int, int) { return r.sim.ledger.running(held), len(held) }, nil)
	if err != nil {
		return err
	}
	r.rep.Recover = time.Since(began)
	r.rep.Recovered = r.usage()
	r.check(ctx, "after the loss")
	return nil
}

// wait polls count until done == total, or fails after timeout.
func (r *run) wait(ctx context.Context, timeout time.Duration, what string, count func() (done, total int), seen func(done, total int)) error {
	began := time.Now()
	deadline := began.Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastNote := began
	for {
		done, total := count()
		if seen != nil {
			seen(done, total)
		}
		if done == total {
			return nil
		}
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("%s: %d of %d instances running after %s", what, done, total, timeout)
		}
		if now.Sub(lastNote) >= 5*time.Second {
			lastNote = now
			r.progress("%s: %d of %d running after %s", what, done, total, now.Sub(began).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d running: %w", what, done, total, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// check compares the lanmanager's services and counts with the ledger.
func (r *run) check(ctx context.Context, at string) {
	svc, err := r.client.Services(ctx)
	if err != nil {
		r.sim.failures.add("%s: list services: %v", at, err)
		return
	}
	r.sim.ledger.check(r.insts, svc, at)
	list, err := r.client.Needs(ctx)
	if err != nil {
		r.sim.failures.add("%s: list needs: %v", at, err)
		return
	}
	running, pending := 0, 0
	for _, n := range list {
		if strings.HasPrefix(n.Name, "sim-") {
			running, pending = running+n.Running, pending+n.Pending
		}
	}
	if running != len(r.insts) || pending != 0 {
		r.sim.ledger.violate("%s: the lanmanager counts %d running and %d pending, want %d and 0", at, running, pending, len(r.insts))
	}
}

// usage reads the lanmanager's usage, and the simulator's if it runs apart,
// recording a failure.
func (r *run) usage() snapshot {
	s := snapshot{At: time.Now(), Separate: !r.tgt.Shared}
	var err error
	if s.LM, err = procUsage(r.tgt.PID); err != nil {
		r.sim.failures.add("%v", err)
	}
	if s.Separate {
		if s.Sim, err = procUsage(0); err != nil {
			r.sim.failures.add("%v", err)
		}
	}
	return s
}

// finish fills the report's counters.
func (r *run) finish(ports *portPool) {
	r.rep.Grants, r.rep.Stops, r.rep.Stray = r.sim.ledger.counts()
	r.rep.Offers = r.sim.offers.Load()
	r.rep.ServicesFrames, r.rep.ServicesBytes = r.sim.svcFrames.Load(), r.sim.svcBytes.Load()
	r.rep.PortChecks = ports.accepts.Load()
	r.rep.Violations, r.rep.ViolationCount = r.sim.ledger.violations()
	r.rep.Failures, r.rep.FailureCount = r.sim.failures.get()
	r.rep.End = r.usage()
}

// closeMasters closes every link, 64 at a time.
func (r *run) closeMasters() {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, m := range r.masters {
		if m == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m.close()
		})
	}
	wg.Wait()
}

func (r *run) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "sim: "+format+"\n", args...)
	}
}
