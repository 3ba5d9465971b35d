// Command sim measures one lanmanager under many masters: it starts a
// lanmanager, connects N simulated masters over real WebSocket links
// (/v1/link), declares needs through the real HTTP API and prints
//
//   - how long placing every instance takes, and the placements per second;
//   - API latency (p50, p99) of list, show, add, scale and rm under that
//     load, and the delivery lag of /v1/events;
//   - how long, after Lose masters are cut off at once, until every instance
//     they held runs elsewhere, and that time less the TTL;
//   - the lanmanager's RSS and CPU, from /proc.
//
// It also checks the outcome: every instance placed exactly once, nothing
// lost, every instance of the lost masters placed again.
//
// The simulated masters' children are fake: a grant is answered at once by
// a child that started and is ready, whose ports are those of a pool of
// real loopback listeners, which the lanmanager dials before approving it.
//
// The lanmanager runs in a process of its own: this program started again
// as `sim serve`, which opens a lan.Server (what `lanmanager serve` runs)
// with the token it generates in its data directory. A process of its own,
// so that /proc and the CPU profile show the lanmanager alone and not the
// thousand links of the simulated side; lan.Open rather than the
// lanmanager binary, so that it can raise the connection cap above the
// links (the binary's is 1,024) and write CPU and mutex profiles.
//
// The API load runs in a third process, `sim probe`, as a user's CLI calls
// the API: in the simulator's process its calls waited behind the
// thousand simulated masters' goroutines for a turn on a core, which a
// user never does (-api-in-process measures it that way).
//
// Everything runs on loopback; every loop is bounded in count and time.
// See docs/scale.md for the commands and the figures.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"berth/lan"
	"berth/needs"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		if err := probeMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "sim probe:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "sim serve:", err)
			os.Exit(1)
		}
		return
	}
	ok, err := simMain(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// options are the simulator's flags besides the run's Config.
type options struct {
	cfg                      Config
	protocols                string
	ttl, timeout             time.Duration
	cpuProfile, mutexProfile string
	keep, quiet              bool
	mastersNice              int
	mastersIdle              bool
	apiInProcess             bool
}

func parseFlags(args []string) (*options, error) {
	var o options
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.IntVar(&o.cfg.Masters, "masters", 1000, "simulated masters")
	fs.IntVar(&o.cfg.Instances, "instances", 50000, "instances in all")
	fs.IntVar(&o.cfg.PerNeed, "per-need", 100, "instances per need")
	fs.StringVar(&o.protocols, "protocols", "http", "ports each instance declares, comma-separated (empty: none)")
	fs.IntVar(&o.cfg.Lose, "lose", 100, "masters cut off at once after placement (0: skip)")
	fs.BoolVar(&o.cfg.CloseLinks, "close-links", false, "close the lost masters' links instead of going silent with the connection up")
	fs.DurationVar(&o.cfg.BidCost, "bid-cost", 100*time.Microsecond, "time a simulated master takes to bid")
	fs.BoolVar(&o.cfg.Services, "services", false, "masters ask for the running set (services frames)")
	fs.IntVar(&o.cfg.PortPool, "port-pool", 64, "loopback listeners answering port checks")
	fs.DurationVar(&o.cfg.APIInterval, "api-interval", 20*time.Millisecond, "pace of the API load (one call at a time)")
	fs.IntVar(&o.cfg.APICalls, "api-calls", 100000, "most API calls of the load")
	fs.DurationVar(&o.cfg.PlaceTimeout, "place-timeout", 30*time.Minute, "give up placing after this long")
	fs.DurationVar(&o.cfg.RecoverTimeout, "recover-timeout", 10*time.Minute, "give up recovering after the TTL plus this long")
	fs.DurationVar(&o.ttl, "ttl", 5*time.Second, "the lanmanager's master TTL")
	fs.DurationVar(&o.timeout, "timeout", time.Hour, "bound on the whole run")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the lanmanager's CPU profile here")
	fs.StringVar(&o.mutexProfile, "mutexprofile", "", "write the lanmanager's mutex contention profile here")
	fs.BoolVar(&o.keep, "keep", false, "keep the lanmanager's data directory and log")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on standard error")
	fs.IntVar(&o.mastersNice, "masters-nice", 0, "scheduling priority (nice, 0-19) of the simulated side once the lanmanager runs: on a LAN the masters have cores of their own")
	fs.BoolVar(&o.mastersIdle, "masters-idle", false, "run the simulated side under SCHED_IDLE once the lanmanager runs (a core only when the lanmanager and the API's caller want none): masters on machines of their own do not compete for the lanmanager's cores")
	fs.BoolVar(&o.apiInProcess, "api-in-process", false, "call the API from the simulator's process, beside the simulated masters, instead of from a process of its own as a user's CLI does")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for p := range strings.SplitSeq(o.protocols, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.cfg.Protocols = append(o.cfg.Protocols, needs.Protocol(p))
		}
	}
	if !o.quiet {
		o.cfg.Progress = os.Stderr
	}
	return &o, o.cfg.Validate()
}

// simMain runs the simulation; ok is false when it found something wrong.
func simMain(args []string) (ok bool, err error) {
	o, err := parseFlags(args)
	if err != nil {
		return false, err
	}
	// An interrupt ends the run early; the report still prints.
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, o.timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "berth-sim-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "sim: lanmanager data and log in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	lm, err := startLanmanager(ctx, dir, o)
	if err != nil {
		return false, err
	}
	if !o.apiInProcess {
		if o.cfg.APIProcess, err = os.Executable(); err != nil {
			lm.stop()
			return false, err
		}
		if o.mastersNice != 0 || o.mastersIdle {
			// The API's caller is a user, not one of the masters.
			o.cfg.APIProcessArgs = []string{"-nice", "0"}
		}
	}
	if o.mastersNice != 0 || o.mastersIdle {
		if err := setPriority(o.mastersNice, o.mastersIdle); err != nil {
			lm.stop()
			return false, err
		}
	}
	rep, err := Run(ctx, o.cfg, lm.target)
	if cerr := lm.stop(); err == nil {
		err = cerr
	}
	if rep != nil {
		rep.Print(os.Stdout)
	}
	return rep != nil && rep.ViolationCount == 0 && rep.FailureCount == 0, err
}

// lanmanager is the lanmanager process.
type lanmanager struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	target Target
}

// startLanmanager starts `sim serve` and waits for its address.
func startLanmanager(ctx context.Context, dir string, o *options) (*lanmanager, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	args := []string{"serve", "-data", data, "-log", filepath.Join(dir, "lanmanager.log"), "-ttl", o.ttl.String(),
		"-max-conns", fmt.Sprint(o.cfg.Masters + 64)}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", o.cpuProfile)
	}
	if o.mutexProfile != "" {
		args = append(args, "-mutexprofile", o.mutexProfile)
	}
	cmd := exec.Command(self, args...)
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
		return nil, fmt.Errorf("start the lanmanager: %w", err)
	}
	lm := &lanmanager{cmd: cmd, stdin: stdin}
	addr, err := readAddr(ctx, stdout)
	if err != nil {
		lm.stop()
		return nil, err
	}
	token, err := lan.ReadTokenFile(filepath.Join(data, lan.TokenFile))
	if err != nil {
		lm.stop()
		return nil, err
	}
	lm.target = Target{Addr: addr, Token: token, PID: cmd.Process.Pid}
	return lm, nil
}

// readAddr reads the "listening ADDR" line, within 30 s.
func readAddr(ctx context.Context, r io.Reader) (string, error) {
	ch := make(chan string, 1)
	go func() { // ends when the line arrives or the process's stdout closes
		line, _ := bufio.NewReader(r).ReadString('\n')
		ch <- line
		io.Copy(io.Discard, r)
	}()
	select {
	case line := <-ch:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if !ok {
			return "", fmt.Errorf("the lanmanager said %q, want \"listening ADDR\"", line)
		}
		return addr, nil
	case <-time.After(30 * time.Second):
		return "", errors.New("the lanmanager did not say where it listens within 30s")
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
}

// stop closes the lanmanager's standard input, which makes it write its
// profiles and close, and waits up to a minute before killing it.
func (lm *lanmanager) stop() error {
	lm.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- lm.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("lanmanager: %w", err)
		}
		return nil
	case <-time.After(time.Minute):
		lm.cmd.Process.Kill()
		<-done
		return errors.New("lanmanager: did not exit within a minute of being told to; killed")
	}
}
