package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// serveInBackground runs `lanmanager serve ARGS` until the test ends and
// returns its announced listen address once it is up.
func serveInBackground(t *testing.T, announce string, args ...string) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	go func() {
		done <- app.RunContext(ctx, append([]string{"lanmanager", "serve", "--listen", "127.0.0.1:0", "--ipc-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--announce-dir", announce}, args...))
	}()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not stop")
		}
		return nil
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v", err)
		default:
		}
		matches, _ := filepath.Glob(filepath.Join(announce, "lanmanager-*.json"))
		if len(matches) == 1 {
			b, err := os.ReadFile(matches[0])
			var a struct{ Listen string }
			if err == nil && json.Unmarshal(b, &a) == nil && a.Listen != "" {
				return a.Listen, stop
			}
		}
		time.Sleep(10 * time.Millisecond) // polling the announcement, bounded by the deadline
	}
	t.Fatal("serve never announced itself")
	return "", nil
}

func exitCodeOf(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// TestServeTokenFoundByClients: serve without --token makes a token, and a
// client of the same user finds it through the announcement; a client that
// cannot find it is refused with a hint; --token-file works.
func TestServeTokenFoundByClients(t *testing.T) {
	t.Setenv("BERTH_TOKEN", "")
	t.Setenv("BERTH_ADDR", "")
	announce := filepath.Join(t.TempDir(), "announce")
	data := filepath.Join(t.TempDir(), "data")
	addr, stop := serveInBackground(t, announce, "--data", data)
	tokenFile := filepath.Join(data, "token")
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}

	if out, err := run(t, nil, "need", "ls", "--addr", addr, "--announce-dir", announce); err != nil {
		t.Fatalf("need ls finding the token by itself: %v\n%s", err, out)
	}
	_, err := run(t, nil, "need", "ls", "--addr", addr, "--announce-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "token") || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("need ls without a token: %v, want a 401 that says where the token is", err)
	}
	if out, err := run(t, nil, "need", "ls", "--addr", addr, "--announce-dir", t.TempDir(), "--token-file", tokenFile); err != nil {
		t.Fatalf("need ls --token-file: %v\n%s", err, out)
	}
	_, err = run(t, nil, "need", "ls", "--addr", addr, "--token-file", filepath.Join(data, "nope"))
	if exitCodeOf(err) != 2 || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("need ls with a missing token file: %v (exit %d), want exit 2 naming --token-file", err, exitCodeOf(err))
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(announce, "*.json")); len(m) != 0 {
		t.Errorf("announcement left behind after exit: %v", m)
	}

	// Restarted on the same data directory, it keeps the same token.
	before, _ := os.ReadFile(tokenFile)
	addr, _ = serveInBackground(t, announce, "--data", data)
	if after, _ := os.ReadFile(tokenFile); string(after) != string(before) {
		t.Error("the token changed across a restart")
	}
	if _, err := run(t, nil, "need", "ls", "--addr", addr, "--announce-dir", announce); err != nil {
		t.Fatalf("need ls after restart: %v", err)
	}
}

// TestServeTokenFlags: contradictory or malformed flags are usage errors,
// and --insecure-no-token writes no token.
func TestServeTokenFlags(t *testing.T) {
	t.Setenv("BERTH_TOKEN", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--insecure-no-token", "--token", "x"}, "contradict"},
		{[]string{"--allowed-host", "http://evil.example/"}, "--allowed-host"},
		{[]string{"--allowed-host", "host:80"}, "--allowed-host"},
	} {
		_, err := run(t, nil, append([]string{"serve", "--listen", "127.0.0.1:0", "--ipc-listen", "off", "--gateway-listen", "off", "--data", t.TempDir(), "--announce-dir", t.TempDir()}, tt.args...)...)
		if exitCodeOf(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("serve %v: %v (exit %d), want exit 2 saying %q", tt.args, err, exitCodeOf(err), tt.want)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	addr, _ := serveInBackground(t, filepath.Join(t.TempDir(), "a"), "--data", data, "--insecure-no-token")
	if _, err := os.Stat(filepath.Join(data, "token")); err == nil {
		t.Error("--insecure-no-token wrote a token")
	}
	if _, err := run(t, nil, "need", "ls", "--addr", addr, "--announce-dir", t.TempDir()); err != nil {
		t.Fatalf("need ls against --insecure-no-token: %v", err)
	}
}
