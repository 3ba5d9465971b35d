// Command busyports plays the other programs of a busy machine: it listens
// on a large sample of TCP ports on 127.0.0.1 until its time is up or it is
// signalled, so the tests can be run against ports they do not get.
//
// By default it holds every port of berth's default ranges' first 20 ports,
// the lanmanager's default port, 24000-27999 and 30000-31999 (windows the
// tests once assumed free), half of 15000-17999 and of 20000-30000, and 2 %
// of all of 1024-65535, drawn at random: about 11,000 ports. -full and
// -sample change the sample; -max bounds it; -for bounds the time.
//
// Once it holds its ports it writes their number and list to -ready (when
// set) and says so on stderr. Run it through bench/busyports.sh, which runs
// tests while it holds the ports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	defaultFull   = "15000-15019,16000-16019,17000-17019,23552-23552,24000-27999,30000-31999"
	defaultSample = "15000-17999:0.5,20000-30000:0.5,1024-65535:0.02"
)

func main() {
	full := flag.String("full", defaultFull, "port spans held whole: lo-hi,...")
	sample := flag.String("sample", defaultSample, "port spans held in part: lo-hi:fraction,...")
	maxPorts := flag.Int("max", 16000, "hold at most this many ports")
	seed := flag.Uint64("seed", 0, "random seed (0: a new one)")
	d := flag.Duration("for", 30*time.Minute, "stop after this long")
	ready := flag.String("ready", "", "write the held ports to this file once they are held")
	flag.Parse()
	if err := run(*full, *sample, *maxPorts, *seed, *d, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "busyports:", err)
		os.Exit(1)
	}
}

func run(full, sample string, maxPorts int, seed uint64, d time.Duration, ready string) error {
	if d <= 0 || d > 24*time.Hour {
		return fmt.Errorf("-for %s: want more than 0 and at most 24h", d)
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	ports, err := pick(full, sample, rand.New(rand.NewPCG(seed, seed)))
	if err != nil {
		return err
	}
	if len(ports) > maxPorts {
		ports = ports[:maxPorts]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()

	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var list strings.Builder
	busy := 0
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if errors.Is(err, syscall.EADDRINUSE) {
			busy++ // someone else holds it already
			continue
		}
		if err != nil {
			return fmt.Errorf("listen on port %d (after %d held): %w", p, len(held), err)
		}
		held = append(held, l)
		fmt.Fprintln(&list, p)
	}
	fmt.Fprintf(os.Stderr, "busyports: holding %d ports on 127.0.0.1 (seed %d; %d of those drawn were taken already) for %s\n",
		len(held), seed, busy, d)
	if ready != "" {
		if err := os.WriteFile(ready, []byte(list.String()), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", ready, err)
		}
	}
	<-ctx.Done()
	fmt.Fprintf(os.Stderr, "busyports: releasing %d ports (%v)\n", len(held), context.Cause(ctx))
	return nil
}

// pick returns the ports to hold, sorted: every port of the full spans and
// each port of a sampled span with its fraction's chance.
func pick(full, sample string, r *rand.Rand) ([]int, error) {
	set := map[int]bool{}
	for _, f := range fields(full) {
		lo, hi, err := span(f)
		if err != nil {
			return nil, fmt.Errorf("-full %q: %w", f, err)
		}
		for p := lo; p <= hi; p++ {
			set[p] = true
		}
	}
	for _, f := range fields(sample) {
		s, frac, ok := strings.Cut(f, ":")
		x, err := strconv.ParseFloat(frac, 64)
		if !ok || err != nil || x < 0 || x > 1 {
			return nil, fmt.Errorf("-sample %q: want lo-hi:fraction with a fraction from 0 to 1", f)
		}
		lo, hi, err := span(s)
		if err != nil {
			return nil, fmt.Errorf("-sample %q: %w", f, err)
		}
		for p := lo; p <= hi; p++ {
			if r.Float64() < x {
				set[p] = true
			}
		}
	}
	ports := make([]int, 0, len(set))
	for p := range set {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports, nil
}

func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// span parses "lo-hi" within 1024-65535.
func span(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, errors.New("want lo-hi")
	}
	if lo < 1024 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("want 1024 <= lo <= hi <= 65535, got %d-%d", lo, hi)
	}
	return lo, hi, nil
}
