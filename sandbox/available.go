package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"berth/spawn"
)

// minVersion is the oldest bwrap the sandbox is known to work with
// (Debian 11's is 0.4.1, Debian 12's 0.8.0).
var minVersion = [3]int{0, 4, 0}

// trialTimeout bounds the trial sandbox Available starts.
const trialTimeout = 10 * time.Second

// Available reports whether a [Sandbox] with PATH's bwrap can run children
// on this machine, and if not, why; see [Sandbox.Available].
func Available() (ok bool, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), trialTimeout)
	defer cancel()
	return new(Sandbox).Available(ctx)
}

// Available is the driver's fingerprint: whether this machine can run
// sandboxed children, and if not, why. It finds bwrap and env, checks
// bwrap's version (0.4.0 or later), then starts one trial sandbox
// running `true` exactly as Wrap would (the same namespaces and mounts):
// where user namespaces are off for an unprivileged user, or a seccomp
// filter refuses them, that trial fails and its stderr is the reason.
func (s *Sandbox) Available(ctx context.Context) (ok bool, reason string) {
	bwrap, _, err := s.programs()
	if err != nil {
		return false, err.Error()
	}
	out, err := exec.CommandContext(ctx, bwrap, "--version").CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("%s --version: %v: %s", bwrap, err, firstLine(out))
	}
	v, err := parseVersion(string(out))
	if err != nil {
		return false, fmt.Sprintf("%s --version: %v", bwrap, err)
	}
	if older(v, minVersion) {
		return false, fmt.Sprintf("%s is bubblewrap %d.%d.%d, older than %d.%d.%d", bwrap, v[0], v[1], v[2], minVersion[0], minVersion[1], minVersion[2])
	}
	trueCmd, err := exec.LookPath("true")
	if err != nil {
		return false, "no `true` program in PATH for the trial sandbox"
	}
	// A mark, as a master gives, so that the trial has --new-session too.
	trial := spawn.Spec{Command: []string{trueCmd}, Dir: "/", Tracking: spawn.Tracking{Marks: []string{"BERTH_SANDBOX_TRIAL=1"}}}
	spec, err := s.Wrap(trial, Options{})
	if err != nil {
		return false, err.Error()
	}
	cmd := exec.CommandContext(ctx, spec.Command[0], spec.Command[1:]...)
	cmd.Env, cmd.Dir = []string{}, spec.Dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no output"
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = "timed out"
		}
		return false, fmt.Sprintf("a trial sandbox failed (%v): %s", err, msg)
	}
	return true, ""
}

// parseVersion reads bwrap --version's "bubblewrap X.Y.Z".
func parseVersion(out string) ([3]int, error) {
	var v [3]int
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != "bubblewrap" {
		return v, fmt.Errorf("unexpected output %q", firstLine([]byte(out)))
	}
	parts := strings.SplitN(f[1], ".", 3)
	for i, p := range parts {
		// "0.11.0-rc1": the number is the leading digits.
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		n, err := strconv.Atoi(p[:end])
		if err != nil {
			return v, fmt.Errorf("unexpected version %q", f[1])
		}
		v[i] = n
	}
	return v, nil
}

func older(v, min [3]int) bool {
	for i := range v {
		if v[i] != min[i] {
			return v[i] < min[i]
		}
	}
	return false
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}
