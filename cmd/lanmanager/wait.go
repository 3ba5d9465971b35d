package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"berth/cmd/internal/cliapp"
	"berth/lan"
	"berth/needs"
)

// waitFlags are the flags of the commands that can wait for a need to run.
func waitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "wait", Usage: "wait until every instance runs (or, scaling down, until the removed ones are gone)"},
		&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "with --wait: give up after this long, exit 1 and say what is pending"},
	}
}

// checkWaitFlags refuses a --timeout that is not positive, or one given
// without --wait (usage errors, exit 2). Commands call it before any call
// that changes state, so that a refused command has changed nothing.
func checkWaitFlags(c *cli.Context) error {
	if c.IsSet("timeout") && !c.Bool("wait") {
		return cliapp.Usage("--timeout: only with --wait")
	}
	if d := c.Duration("timeout"); d <= 0 {
		return cliapp.Usage("--timeout %s: must be positive", d)
	}
	return nil
}

// waitPoll is how often --wait asks the lanmanager.
const waitPoll = 200 * time.Millisecond

// waitRunning polls the need until every instance runs and no removed one
// is left. On a terminal it redraws one progress line; otherwise it prints
// a line whenever the progress changes. On timeout it returns an error
// (exit 1) that lists what is pending and why.
func waitRunning(c *cli.Context, cl *lan.Client, name string) error {
	timeout := c.Duration("timeout") // checked by checkWaitFlags
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	w := c.App.Writer
	tty := isTerminal(w)
	last := ""
	for {
		st, err := cl.Need(ctx, name)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if st != nil && err == nil {
			line := progress(st)
			switch {
			case tty:
				fmt.Fprintf(w, "\r\033[K%s", line)
			case line != last:
				fmt.Fprintln(w, line)
			}
			last = line
			if settled(st) {
				if tty {
					fmt.Fprintln(w)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			if errors.Is(c.Context.Err(), context.Canceled) {
				return fmt.Errorf("need %s: interrupted while waiting (%s)", name, last)
			}
			return waitTimeout(cl, name, timeout)
		case <-time.After(waitPoll):
		}
	}
}

// settled reports whether every wanted instance runs and no removed one is
// left.
func settled(st *needs.NeedStatus) bool {
	running := 0
	for _, in := range st.InstanceList {
		if in.Removing {
			return false
		}
		if in.State == needs.Running {
			running++
		}
	}
	return running == st.Instances && len(st.InstanceList) == st.Instances
}

// progress is one line such as "web: 3/5 running, 1 starting, 1 pending".
func progress(st *needs.NeedStatus) string {
	counts := map[string]int{}
	running, removing := 0, 0
	for _, in := range st.InstanceList {
		switch {
		case in.Removing:
			removing++
		case in.State == needs.Running:
			running++
		default:
			counts[string(in.State)]++
		}
	}
	parts := []string{fmt.Sprintf("%d/%d running", running, st.Instances)}
	states := make([]string, 0, len(counts))
	for s := range counts {
		states = append(states, s)
	}
	sort.Strings(states)
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	if removing > 0 {
		parts = append(parts, fmt.Sprintf("%d stopping for good", removing))
	}
	return st.Name + ": " + strings.Join(parts, ", ")
}

// waitTimeout is the error of a --wait that ran out: what is not running
// yet, and why.
func waitTimeout(cl *lan.Client, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cl.Need(ctx, name)
	if err != nil {
		return fmt.Errorf("need %s: not settled after %s (%v)", name, timeout, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "need %s: not settled after %s: %s", name, timeout, strings.TrimPrefix(progress(st), st.Name+": "))
	for _, in := range st.InstanceList {
		if in.State == needs.Running && !in.Removing {
			continue
		}
		fmt.Fprintf(&b, "\n  %s %s", in.Name, in.State)
		if in.Reason != "" {
			fmt.Fprintf(&b, ": %s", in.Reason)
		}
	}
	for _, r := range st.Reasons {
		fmt.Fprintf(&b, "\n  why: %s", r)
	}
	return errors.New(b.String())
}

// isTerminal reports whether w is a terminal: a file that answers the
// terminal ioctl TCGETS. A character device is not enough: /dev/null is
// one, and a --wait into it drew escape sequences.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	rc, err := f.SyscallConn() // not f.Fd(), which would make f blocking
	if err != nil {
		return false
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) { _, ioctlErr = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil {
		return false
	}
	return ioctlErr == nil
}
