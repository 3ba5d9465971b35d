package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/needs"
)

// ingressGet makes one request through an ingress on a new connection and
// returns the answer ("hello from web.N").
func ingressGet(ctx context.Context, addr string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", addr, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// TestIngressE2E is issue 10's ingress with the real binaries: a need of 3
// instances published with --ingress over two masters, reached through
// either master's ingress address; round-robin spreads exactly; killing an
// instance loses no new connection; with the lanmanager stopped the
// ingress goes on serving, and it follows a scale-up once it is back.
func TestIngressE2E(t *testing.T) {
	l := startLan(t, "tok")
	port := freePort(t)
	var ingress []string
	for i, name := range []string{"m1", "m2"} {
		ip := fmt.Sprintf("127.0.0.%d", 2+i) // loopback is all of 127/8: both masters open the same port
		base := freeports.Block(t, 15)
		startMasterWith(t, l, name, base, base+5, 5, masterOpts{extra: map[string]any{"ingressaddress": ip}})
		ingress = append(ingress, fmt.Sprintf("%s:%d", ip, port))
	}
	l.mustCLI(t, "need", "add", "web", "--instances", "3", "--protocols", "http", "--ingress", fmt.Sprintf("http=%d", port), "--", bin.hello)
	waitFor(t, 60*time.Second, "3 running", func() bool { return len(l.running(t, "web")) == 3 })
	waitUntil(t, 30*time.Second, "both masters to report the ingress open", func() (bool, string) {
		out := l.mustCLI(t, "master", "ls")
		return strings.Count(out, fmt.Sprintf("ingress web http:%d: open", port)) == 2, out
	})
	spread := func(addr string, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			body, err := ingressGet(t.Context(), addr)
			if err != nil {
				t.Fatalf("through %s: %v", addr, err)
			}
			got[strings.TrimPrefix(body, "hello from ")]++
		}
		return got
	}
	for _, addr := range ingress {
		// The mirror may still be filling: wait until all 3 answer, then
		// count a whole number of rounds.
		waitUntil(t, 20*time.Second, "all 3 instances behind "+addr, func() (bool, string) {
			got := spread(addr, 6)
			return len(got) == 3, fmt.Sprint(got)
		})
		if got := spread(addr, 30); len(got) != 3 || got["web.0"] != 10 || got["web.1"] != 10 || got["web.2"] != 10 {
			t.Errorf("30 connections through %s went %v, want 10 to each", addr, got)
		}
	}

	// Kill one instance: every new connection still succeeds.
	victim := l.running(t, "web")["web.1"]
	syscall.Kill(victim.PID, syscall.SIGKILL)
	// kill(2) returns before the process has died: until its sockets are
	// closed, a connection can still be accepted by its kernel and reset
	// a moment later, which is the loss of an open connection. New ones
	// are those made once its port refuses.
	victimAddr := net.JoinHostPort(victim.Address, fmt.Sprint(victim.Ports[needs.HTTP]))
	waitFor(t, 10*time.Second, "the killed instance's port to refuse", func() bool {
		c, err := net.DialTimeout("tcp", victimAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		for _, addr := range ingress {
			if _, err := ingressGet(t.Context(), addr); err != nil {
				t.Fatalf("connection %d through %s after the kill: %v", n, addr, err)
			}
		}
	}
	waitFor(t, 60*time.Second, "3 running again", func() bool { return len(l.running(t, "web")) == 3 })

	// The lanmanager stops: the ingress serves the last set it knew.
	if err := l.proc.stop(t, 10*time.Second); err != nil {
		t.Logf("lanmanager stop: %v", err)
	}
	for _, addr := range ingress {
		waitUntil(t, 20*time.Second, "all 3 instances behind "+addr+" with the lanmanager stopped", func() (bool, string) {
			got := spread(addr, 6)
			return len(got) == 3, fmt.Sprint(got)
		})
	}
	// Back, and scaled to 4: the new instance gets connections.
	l.restart(t)
	waitFor(t, 30*time.Second, "both masters back", func() bool { return l.connected(t, "m1") && l.connected(t, "m2") })
	l.mustCLI(t, "need", "scale", "web", "4")
	waitFor(t, 60*time.Second, "4 running", func() bool { return len(l.running(t, "web")) == 4 })
	for _, addr := range ingress {
		waitUntil(t, 20*time.Second, "web.3 behind "+addr, func() (bool, string) {
			got := spread(addr, 8)
			return got["web.3"] > 0, fmt.Sprint(got)
		})
	}
	for _, in := range l.need(t, "web").InstanceList {
		if in.State != needs.Running {
			t.Errorf("%s %s at the end", in.Name, in.State)
		}
	}
}

// heldConn makes one request through an ingress over a connection it
// keeps open, and returns the connection and the instance that answered.
func heldConn(t *testing.T, addr string, local string) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: ingress\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("through %s: %v", addr, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c, strings.TrimPrefix(strings.TrimSpace(string(b)), "hello from ")
}

// TestIngressStrategies: least-conn keeps new connections off an instance
// that holds long ones (round-robin would send it a third), and hash sends
// each client address to one instance every time, with the real binaries.
func TestIngressStrategies(t *testing.T) {
	l := startLan(t, "tok")
	base := freeports.Block(t, 30)
	startMasterWith(t, l, "m1", base, base+10, 10, masterOpts{})
	lc, hs := freePort(t), freePort(t)
	l.mustCLI(t, "need", "add", "lc", "--instances", "1", "--protocols", "http", "--ingress", fmt.Sprintf("http=%d", lc), "--balance", "least-conn", "--", bin.hello)
	l.mustCLI(t, "need", "add", "hs", "--instances", "3", "--protocols", "http", "--ingress", fmt.Sprintf("http=%d", hs), "--balance", "hash", "--", bin.hello)
	waitFor(t, 60*time.Second, "lc.0 and hs's 3 running", func() bool {
		return len(l.running(t, "lc")) == 1 && len(l.running(t, "hs")) == 3
	})
	lcAddr, hsAddr := fmt.Sprintf("127.0.0.1:%d", lc), fmt.Sprintf("127.0.0.1:%d", hs)
	waitUntil(t, 20*time.Second, "the ingress of lc", func() (bool, string) {
		_, err := ingressGet(t.Context(), lcAddr)
		return err == nil, fmt.Sprint(err)
	})

	// least-conn: 5 long connections on lc.0, then 2 more instances.
	for range 5 {
		if _, who := heldConn(t, lcAddr, ""); who != "lc.0" {
			t.Fatalf("a long connection went to %q, want lc.0 (the only instance)", who)
		}
	}
	l.mustCLI(t, "need", "scale", "lc", "3")
	waitFor(t, 60*time.Second, "lc's 3 running", func() bool { return len(l.running(t, "lc")) == 3 })
	waitUntil(t, 20*time.Second, "lc.1 and lc.2 behind the ingress", func() (bool, string) {
		got := map[string]int{}
		for range 6 {
			body, err := ingressGet(t.Context(), lcAddr)
			if err != nil {
				return false, err.Error()
			}
			got[body]++
		}
		return got["hello from lc.1"] > 0 && got["hello from lc.2"] > 0, fmt.Sprint(got)
	})
	got := map[string]int{}
	for range 30 {
		body, err := ingressGet(t.Context(), lcAddr)
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimPrefix(body, "hello from ")]++
	}
	if got["lc.0"] != 0 || got["lc.1"] == 0 || got["lc.2"] == 0 {
		t.Errorf("30 short connections with lc.0 holding 5 went %v; least-conn should leave lc.0 alone", got)
	}

	// hash: each client address sticks to one instance.
	waitUntil(t, 20*time.Second, "the ingress of hs", func() (bool, string) {
		_, err := ingressGet(t.Context(), hsAddr)
		return err == nil, fmt.Sprint(err)
	})
	used := map[string]bool{}
	for i := range 6 {
		client := fmt.Sprintf("127.0.%d.%d", 10+i, 1+i)
		first := ""
		for range 5 {
			c, who := heldConn(t, hsAddr, client)
			c.Close()
			if first == "" {
				first = who
			} else if who != first {
				t.Errorf("client %s went to %s, then to %s; hash should keep it on one", client, first, who)
			}
		}
		used[first] = true
	}
	t.Logf("6 client addresses used %d of hs's 3 instances", len(used))
}

// TestResourceAcrossMastersE2E: with the real binaries, a master that runs
// none of a need's instances balances them by resource with the
// heartbeats their master shares through the lanmanager. hot.0 and hot.1
// run on m1, hot.0 keeping a core busy; m2 links after them and runs
// neither; of 20 connections through m2's ingress, hot.0 gets at most 4.
// Without the shared figures m2 would score both by connections alone and
// alternate between them.
func TestResourceAcrossMastersE2E(t *testing.T) {
	l := startLan(t, "tok")
	port := freePort(t)
	base := freeports.Block(t, 15)
	startMasterWith(t, l, "m1", base, base+5, 5, masterOpts{extra: map[string]any{"ingressaddress": "127.0.0.2"}})
	l.mustCLI(t, "need", "add", "hot", "--instances", "2", "--protocols", "http", "--ingress", fmt.Sprintf("http=%d", port),
		"--balance", "resource", "--env", "HOTSERVICE_BURN=hot.0", "--", bin.hotservice)
	waitFor(t, 60*time.Second, "hot's 2 running", func() bool { return len(l.running(t, "hot")) == 2 })
	base2 := freeports.Block(t, 15)
	startMasterWith(t, l, "m2", base2, base2+5, 5, masterOpts{extra: map[string]any{"ingressaddress": "127.0.0.3"}})
	waitUntil(t, 30*time.Second, "m2 to report the ingress open", func() (bool, string) {
		out := l.mustCLI(t, "master", "ls")
		return strings.Count(out, fmt.Sprintf("ingress hot http:%d: open", port)) == 2, out
	})
	for name, in := range l.running(t, "hot") {
		if in.Master != "m1" {
			t.Fatalf("%s runs on %s, want m1", name, in.Master)
		}
	}
	addr := fmt.Sprintf("127.0.0.3:%d", port)
	spread := func(n int) (map[string]int, error) {
		got := map[string]int{}
		for range n {
			body, err := ingressGet(t.Context(), addr)
			if err != nil {
				return got, err
			}
			got[strings.TrimPrefix(body, "hello from ")]++
		}
		return got, nil
	}
	// hot.0's heartbeats reach m1 every second, the lanmanager every
	// second after, and m2's proxy a second or two later.
	waitUntil(t, 30*time.Second, "m2's ingress to prefer hot.1", func() (bool, string) {
		got, err := spread(4)
		return err == nil && got["hot.1"] == 4, fmt.Sprint(got, err)
	})
	got, err := spread(20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 connections through m2: %v", got)
	if got["hot.0"] > 4 {
		t.Errorf("20 connections through m2 went %v: the busy hot.0 got more than 4", got)
	}
}
