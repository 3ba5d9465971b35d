package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// apiProber is the API load of a run: in this process (apiLoad) or in a
// process of its own (probeProcess), as a user's CLI calls the API.
type apiProber interface {
	setPhase(p string)
	setDeclared(n int64)
	run(ctx context.Context)
	stats() (map[string]map[string]dist, []string, int)
}

// probeResult is what `sim probe` prints when its standard input closes.
type probeResult struct {
	API    map[string]map[string]dist
	Errors []string
	ErrN   int
}

// probeMain runs the API load in a process of its own: `sim probe -addr
// ADDR -needs a,b,c ...`, the token in BERTH_TOKEN. Its standard input
// takes "phase NAME" and "declared N" lines; when it closes, the load
// stops and the figures are printed on stdout as JSON.
func probeMain(args []string) error {
	fs := flag.NewFlagSet("sim probe", flag.ContinueOnError)
	addr := fs.String("addr", "", "the lanmanager's API address")
	needList := fs.String("needs", "", "the run's needs, comma-separated")
	interval := fs.Duration("interval", 20*time.Millisecond, "pace of the calls")
	calls := fs.Int("calls", 100000, "most calls")
	nice := fs.Int("nice", 0, "scheduling priority of this process's threads, under the normal policy (default: its parent's priority and policy)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *needList == "" {
		return errors.New("probe: -addr and -needs are required")
	}
	niceSet := false
	fs.Visit(func(f *flag.Flag) { niceSet = niceSet || f.Name == "nice" })
	if niceSet {
		// Raising a priority back needs root: without it the probe
		// runs at its parent's, and says so.
		if err := setPriority(*nice, false); err != nil {
			fmt.Fprintf(os.Stderr, "sim probe: %v; the API calls run at the simulated masters' priority\n", err)
		}
	}
	load := newAPILoad(*addr, os.Getenv("BERTH_TOKEN"), strings.Split(*needList, ","), *interval, *calls)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { load.run(ctx) })
	err := readProbeControl(os.Stdin, load)
	cancel()
	wg.Wait()
	var res probeResult
	res.API, res.Errors, res.ErrN = load.stats()
	if jerr := json.NewEncoder(os.Stdout).Encode(&res); jerr != nil {
		return jerr
	}
	return err
}

// readProbeControl applies the control lines until r ends.
func readProbeControl(r io.Reader, p apiProber) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		word, arg, _ := strings.Cut(sc.Text(), " ")
		switch word {
		case "phase":
			p.setPhase(arg)
		case "declared":
			n, err := strconv.ParseInt(arg, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("probe: declared %q: want a count", arg)
			}
			p.setDeclared(n)
		default:
			return fmt.Errorf("probe: unknown control line %q", sc.Text())
		}
	}
	return sc.Err()
}

// probeProcess drives a `sim probe` child.
type probeProcess struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser

	mu    sync.Mutex // Protects following.
	stdin io.WriteCloser
	res   probeResult
	err   error
}

// startProbe starts `exe probe` against addr, with extra arguments.
func startProbe(exe string, extra []string, addr, token string, needNames []string, interval time.Duration, calls int) (*probeProcess, error) {
	args := append([]string{"probe", "-addr", addr, "-needs", strings.Join(needNames, ","),
		"-interval", interval.String(), "-calls", strconv.Itoa(calls)}, extra...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "BERTH_TOKEN="+token)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the API probe: %w", err)
	}
	return &probeProcess{cmd: cmd, stdin: stdin, stdout: stdout}, nil
}

func (p *probeProcess) control(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil {
		return
	}
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil && p.err == nil {
		p.err = fmt.Errorf("API probe: %w", err)
	}
}

func (p *probeProcess) setPhase(ph string)  { p.control("phase " + ph) }
func (p *probeProcess) setDeclared(n int64) { p.control("declared " + strconv.FormatInt(n, 10)) }

// run waits for ctx, then ends the probe and reads its figures.
func (p *probeProcess) run(ctx context.Context) {
	<-ctx.Done()
	p.mu.Lock()
	p.stdin.Close()
	p.stdin = nil
	p.mu.Unlock()
	var res probeResult
	derr := json.NewDecoder(p.stdout).Decode(&res)
	io.Copy(io.Discard, p.stdout)
	werr := p.cmd.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res = res
	p.err = errors.Join(p.err, derr, werr)
}

func (p *probeProcess) stats() (map[string]map[string]dist, []string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs, n := p.res.Errors, p.res.ErrN
	if p.err != nil {
		errs, n = append(errs, p.err.Error()), n+1
	}
	return p.res.API, errs, n
}
