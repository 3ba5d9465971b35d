// Command procs measures berth with real processes against the same
// processes started directly (issue 9 §2):
//
//  1. directly: fork and exec N instances of a tiny program (bench/procs/tiny)
//     one by one, each told the path of one Unix socket as its BERTH_PIPE,
//     and wait until every one has said child.ready on it;
//  2. through berth: a real lanmanager (`lanmanager serve`) and M real
//     masters (`master run`) on loopback ports picked at run time, with
//     temporary data and runtime directories; declare needs of N instances
//     of the same program in all (no ports: an instance is approved when it
//     says ready on its master's control pipe) and wait until all N run.
//
// It prints both times and their ratio, and checks that every instance ran
// exactly once (one pid each, no failure, no restart). Every wait is
// bounded by -timeout. With -perf DIR it records `perf record -g` of the
// lanmanager and each master during the berth phase, for
// `perf report -i DIR/<name>.data --comm <name>` (the profile follows the
// children too, which run as "tiny"). Run it through bench/procs.sh, which
// builds the binaries.
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"
)

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "instances")
	flag.IntVar(&o.masters, "masters", 2, "masters")
	flag.StringVar(&o.bin, "bin", "", "directory with the lanmanager, master and tiny binaries")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound of the whole run")
	flag.StringVar(&o.perf, "perf", "", "directory for perf profiles of the lanmanager and masters (berth phase)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, data)")
	flag.BoolVar(&o.skipDirect, "skip-direct", false, "measure berth only")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "procs:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	r, err := run(ctx, o)
	if r != nil {
		r.print(os.Stdout, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "procs:", err)
		os.Exit(1)
	}
}

type options struct {
	n, masters int
	bin        string
	timeout    time.Duration
	perf       string
	keep       bool
	skipDirect bool
	logf       func(format string, args ...any) // progress; nil prints nothing
}

// maxN bounds the run: 20 needs of the lanmanager's 1,000-instance limit.
const maxN = 20000

func (o options) check() error {
	switch {
	case o.n < 1 || o.n > maxN:
		return fmt.Errorf("-n %d: want 1-%d", o.n, maxN)
	case o.masters < 1 || o.masters > 64:
		return fmt.Errorf("-masters %d: want 1-64", o.masters)
	case o.bin == "":
		return fmt.Errorf("-bin: the directory with the lanmanager, master and tiny binaries is required (bench/procs.sh builds them)")
	case o.timeout <= 0:
		return fmt.Errorf("-timeout %s: must be positive", o.timeout)
	}
	for _, b := range []string{"lanmanager", "master", "tiny"} {
		if _, err := os.Stat(o.bin + "/" + b); err != nil {
			return fmt.Errorf("-bin %s: %w", o.bin, err)
		}
	}
	return nil
}

// result is what a run measured.
type result struct {
	direct, berth time.Duration
	perMaster     map[string]int
	cpu           map[string]time.Duration // CPU time of each daemon, from its start until all ran
	dir           string                   // kept temporary directory, if any
}

func (r *result) print(w *os.File, o options) {
	if !o.skipDirect {
		fmt.Fprintf(w, "fork+exec %d tiny programs directly, wait for ready: %v\n", o.n, r.direct.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "need add of %d instances on %d masters to all running: %v\n", o.n, o.masters, r.berth.Round(time.Millisecond))
	if !o.skipDirect {
		fmt.Fprintf(w, "ratio berth/direct: %.2f\n", float64(r.berth)/float64(r.direct))
	}
	fmt.Fprintf(w, "instances per master: %v\n", r.perMaster)
	fmt.Fprintf(w, "CPU time from start until all ran:")
	for _, name := range slices.Sorted(maps.Keys(r.cpu)) {
		fmt.Fprintf(w, " %s %v", name, r.cpu[name].Round(10*time.Millisecond))
	}
	fmt.Fprintln(w)
	if r.dir != "" {
		fmt.Fprintf(w, "kept: %s\n", r.dir)
	}
}

func run(ctx context.Context, o options) (*result, error) {
	tmp, err := os.MkdirTemp("", "berth-procs-")
	if err != nil {
		return nil, err
	}
	r := &result{}
	if o.keep {
		r.dir = tmp
	} else {
		defer os.RemoveAll(tmp)
	}
	if !o.skipDirect {
		if r.direct, err = direct(ctx, o, tmp); err != nil {
			return nil, fmt.Errorf("direct: %w", err)
		}
	}
	r.berth, r.perMaster, r.cpu, err = viaBerth(ctx, o, tmp)
	if err != nil {
		err = fmt.Errorf("through berth: %w", err)
		if r.berth == 0 {
			return nil, err
		}
	}
	return r, err
}
