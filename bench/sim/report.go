package main

import (
	"fmt"
	"io"
	"time"
)

// Report holds a run's figures and what it found wrong.
type Report struct {
	Config Config
	Target Target
	TTL    time.Duration // the masters' TTL, from their welcome

	Connect time.Duration // all masters connected and welcomed
	Declare time.Duration // every need declared (POST /v1/needs)
	Place   time.Duration // from the first declaration to every instance running
	Marks   []mark        // when 10, 50 and 90% ran

	PlaceGrants          int   // grants received until every instance ran
	Grants, Stops, Stray int   // grants and stops received in all, messages about unknown allocations
	Offers               int64 // offers received by all masters
	// ServicesFrames and ServicesBytes count the services frames all
	// masters received, and their bodies' bytes.
	ServicesFrames, ServicesBytes int64
	PortChecks                    int64 // connections the port pool accepted

	API           map[string]map[string]dist // phase → call → latency
	APIErrors     []string
	APIErrorCount int
	Events        map[string]dist // phase → delivery lag
	EventDrops    int
	EventErr      error

	LostInstances int           // instances the cut-off masters held
	Recover       time.Duration // from the cut to all of them running elsewhere

	// The lanmanager's usage before declaring, once everything ran, at the
	// cut, once the loss was recovered, and at the end.
	// A snapshot left zero was not reached.
	Before, Placed, Cut, Recovered, End snapshot

	Violations     []string // broken invariants (placed once, nothing lost)
	ViolationCount int
	Failures       []string // links dropped, error frames, failed checks
	FailureCount   int
}

// mark is when a share of the instances ran.
type mark struct {
	Percent int
	At      time.Duration
}

// Rate is the placements per second: instances over the placement time.
func (r *Report) Rate() float64 {
	if r.Place <= 0 {
		return 0
	}
	return float64(r.Config.Instances) / r.Place.Seconds()
}

// Print writes the report as the lines docs/scale.md quotes.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	fmt.Fprintf(w, "masters %d, instances %d (%d per need), protocols %v, lose %d (close links: %v), bid cost %s, TTL %s\n",
		c.Masters, c.Instances, c.PerNeed, c.Protocols, c.Lose, c.CloseLinks, c.BidCost, r.TTL)
	fmt.Fprintf(w, "connect %d masters:             %s\n", c.Masters, sec(r.Connect))
	fmt.Fprintf(w, "declare %d needs:               %s\n", (c.Instances+c.PerNeed-1)/c.PerNeed, sec(r.Declare))
	if r.Place > 0 {
		fmt.Fprintf(w, "all %d running after:        %s  (%.0f placements/s)\n", c.Instances, sec(r.Place), r.Rate())
	}
	for _, m := range r.Marks {
		fmt.Fprintf(w, "  %d%% running after:            %s\n", m.Percent, sec(m.At))
	}
	fmt.Fprintf(w, "messages: %d offers, %d grants (%d until all ran), %d stops, %d about unknown allocations; %d port checks answered\n",
		r.Offers, r.Grants, r.PlaceGrants, r.Stops, r.Stray, r.PortChecks)
	from := "the simulator's process"
	if c.APIProcess != "" {
		from = "a process of its own"
	}
	fmt.Fprintf(w, "API calls from %s, one at a time, one every %s at most\n", from, c.APIInterval)
	for _, phase := range []string{phasePlace, phaseLoss} {
		for _, op := range apiOps {
			if d, ok := r.API[phase][op]; ok {
				fmt.Fprintf(w, "API %-5s during %-9s  n %5d  p50 %9s  p99 %9s  max %9s\n", op, phase, d.N, ms(d.P50), ms(d.P99), ms(d.Max))
			}
		}
	}
	fmt.Fprintf(w, "API errors: %d\n", r.APIErrorCount)
	for _, e := range r.APIErrors[:min(5, len(r.APIErrors))] {
		fmt.Fprintf(w, "  %s\n", e)
	}
	for _, phase := range []string{phasePlace, phaseLoss} {
		if d, ok := r.Events[phase]; ok {
			fmt.Fprintf(w, "event lag during %-9s     n %6d  p50 %9s  p99 %9s  max %9s\n", phase, d.N, ms(d.P50), ms(d.P99), ms(d.Max))
		}
	}
	fmt.Fprintf(w, "event subscription dropped %d time(s)\n", r.EventDrops)
	if r.Recover > 0 {
		fmt.Fprintf(w, "loss of %d masters (%d instances): all running elsewhere after %s, TTL %s, so TTL + %s\n",
			c.Lose, r.LostInstances, sec(r.Recover), r.TTL, sec(r.Recover-r.TTL))
	}
	r.printUsage(w)
	fmt.Fprintf(w, "violations: %d\n", r.ViolationCount)
	for _, v := range r.Violations[:min(10, len(r.Violations))] {
		fmt.Fprintf(w, "  %s\n", v)
	}
	fmt.Fprintf(w, "services: %d frames, %.1f MB to all masters\n", r.ServicesFrames, float64(r.ServicesBytes)/1e6)
	fmt.Fprintf(w, "failures (links dropped, error frames, failed checks): %d\n", r.FailureCount)
	for _, f := range r.Failures[:min(10, len(r.Failures))] {
		fmt.Fprintf(w, "  %s\n", f)
	}
}

// snapshot is the usage of the lanmanager and, when it runs apart, of the
// simulator, at one moment.
type snapshot struct {
	At       time.Time
	LM, Sim  usage
	Separate bool // Sim is the simulator's own process
}

// printUsage prints the lanmanager's memory and CPU, and the simulator's
// CPU when it runs apart: the two share the machine's cores.
func (r *Report) printUsage(w io.Writer) {
	who := "lanmanager"
	if r.Target.Shared {
		who = "lanmanager and simulator (one process)"
	}
	mb := func(b uint64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }
	placed := "-"
	if !r.Placed.At.IsZero() {
		placed = mb(r.Placed.LM.RSS)
	}
	fmt.Fprintf(w, "%s RSS: %s after placement, %s at the end, peak %s\n", who, placed, mb(r.End.LM.RSS), mb(r.End.LM.PeakRSS))
	// to is the end of a span: the snapshot if reached, else the end.
	to := func(s snapshot) snapshot {
		if s.At.IsZero() {
			return r.End
		}
		return s
	}
	cpu := func(of func(snapshot) time.Duration, from, to snapshot) string {
		d := to.At.Sub(from.At)
		if from.At.IsZero() || d <= 0 {
			return "-"
		}
		c := of(to) - of(from)
		return fmt.Sprintf("%.1f s in %.1f s (%.0f%% of one core)", c.Seconds(), d.Seconds(), 100*c.Seconds()/d.Seconds())
	}
	lm := func(s snapshot) time.Duration { return s.LM.CPU }
	fmt.Fprintf(w, "%s CPU: placement %s; recovery %s\n", who, cpu(lm, r.Before, to(r.Placed)), cpu(lm, r.Cut, to(r.Recovered)))
	if r.End.Separate {
		sim := func(s snapshot) time.Duration { return s.Sim.CPU }
		fmt.Fprintf(w, "simulator CPU: placement %s; recovery %s\n", cpu(sim, r.Before, to(r.Placed)), cpu(sim, r.Cut, to(r.Recovered)))
	}
}
