package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"time"

	"berth/lan"
)

// serveConfig is the lanmanager process's configuration.
type serveConfig struct {
	data, logFile            string
	ttl                      time.Duration
	maxConns                 int
	cpuProfile, mutexProfile string
	nice                     int
}

// serveMain runs the lanmanager role: `sim serve -data DIR ...`. It opens a
// lan.Server on 127.0.0.1:0 with the token kept in DIR/token (created on
// first use, as `lanmanager serve` does), prints "listening ADDR" on
// stdout, and runs until its standard input closes; then it writes the
// profiles and closes the server.
func serveMain(args []string) error {
	var c serveConfig
	fs := flag.NewFlagSet("sim serve", flag.ContinueOnError)
	fs.StringVar(&c.data, "data", "", "data directory (lan.db, token)")
	fs.StringVar(&c.logFile, "log", "", "log file (default: standard error)")
	fs.DurationVar(&c.ttl, "ttl", 5*time.Second, "master TTL")
	fs.IntVar(&c.maxConns, "max-conns", 0, "connection cap (0: the lanmanager's default)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run here")
	fs.StringVar(&c.mutexProfile, "mutexprofile", "", "write a mutex contention profile here")
	fs.IntVar(&c.nice, "nice", 0, "scheduling priority of the lanmanager's threads (default: the simulator's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.data == "" {
		return errors.New("serve: -data is required")
	}
	niceSet := false
	fs.Visit(func(f *flag.Flag) { niceSet = niceSet || f.Name == "nice" })
	if niceSet {
		if err := setPriority(c.nice, false); err != nil {
			return err
		}
	}
	return serve(c)
}

func serve(c serveConfig) error {
	// A ^C in the terminal reaches the whole process group: the simulator
	// handles it and then closes our standard input, which ends us.
	signal.Ignore(os.Interrupt)
	logw := io.Writer(os.Stderr)
	if c.logFile != "" {
		f, err := os.OpenFile(c.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open log: %w", err)
		}
		defer f.Close()
		logw = f
	}
	token, _, _, err := lan.LoadOrCreateToken(c.data)
	if err != nil {
		return err
	}
	stopProfiles, err := startProfiles(c)
	if err != nil {
		return err
	}
	srv, err := lan.Open(context.Background(), lan.Config{Listen: "127.0.0.1:0", DataDir: c.data, Token: token,
		MasterTTL: c.ttl, MaxConns: c.maxConns, Logger: slog.New(slog.NewTextHandler(logw, nil))})
	if err != nil {
		stopProfiles()
		return err
	}
	fmt.Printf("listening %s\n", srv.Addr())
	io.Copy(io.Discard, os.Stdin) // until the simulator closes it, or dies
	perr := stopProfiles()
	return errors.Join(srv.Close(), perr)
}

// startProfiles starts the CPU profile and mutex sampling; the function it
// returns stops them and writes the files.
func startProfiles(c serveConfig) (func() error, error) {
	var cpu *os.File
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("create cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("start cpu profile: %w", err)
		}
		cpu = f
	}
	if c.mutexProfile != "" {
		runtime.SetMutexProfileFraction(5)
	}
	return func() error {
		var errs []error
		if cpu != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpu.Close())
		}
		if c.mutexProfile != "" {
			errs = append(errs, writeProfile("mutex", c.mutexProfile))
		}
		return errors.Join(errs...)
	}, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s profile: %w", name, err)
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	return errors.Join(err, f.Close())
}
