package mesh

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echoServer accepts on a loopback port and echoes every connection until
// the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// noPumpUsers fails the test if a proxy still uses the loops: the test
// starts its own, and reads or sets what they read at start.
func noPumpUsers(t *testing.T) {
	t.Helper()
	pumps.mu.Lock()
	users := pumps.users
	pumps.mu.Unlock()
	if users != 0 {
		t.Fatalf("%d proxies still use the loops; this test starts its own", users)
	}
}

// currentLoops returns the loops running now.
func currentLoops() []*pump {
	pumps.mu.Lock()
	defer pumps.mu.Unlock()
	return pumps.loops
}

// onLoop runs f on pm's loop and waits for it.
func onLoop(pm *pump, f func()) {
	done := make(chan struct{})
	pm.post(func() { f(); close(done) })
	<-done
}

// clientSockets reports, from pm's loop, how many connections it holds
// and the TCP_NODELAY of each one's client socket (-1: unreadable).
func clientSockets(pm *pump) (links int, nodelay []int) {
	onLoop(pm, func() {
		links = pm.links
		for _, e := range pm.ends {
			if e == &e.l.ends[0] {
				v, err := unix.GetsockoptInt(e.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
				if err != nil {
					v = -1
				}
				nodelay = append(nodelay, v)
			}
		}
	})
	return links, nodelay
}

// TestPumpSpreadsConnections: with a loop per P, connections accepted on
// one listener are handed to the loop holding the fewest, so 12
// long-lived connections over 4 loops are 3 on each; every one is proxied
// both ways, and its client socket has TCP_NODELAY, which it inherits
// from the listener instead of getting it by a call of its own.
func TestPumpSpreadsConnections(t *testing.T) {
	noPumpUsers(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))

	p := New(Config{})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "echo", Addr: echoServer(t)}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := range 12 {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line := fmt.Sprintf("connection %d\n", i)
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("connection %d echoed %q, %v; want %q", i, got, err, line)
		}
		conns = append(conns, c)
	}

	loops := currentLoops()
	if len(loops) != 4 {
		t.Fatalf("%d loops with GOMAXPROCS 4, want 4", len(loops))
	}
	for i, pm := range loops {
		links, nodelay := clientSockets(pm)
		if links != 3 || pm.load.Load() != 3 {
			t.Errorf("loop %d holds %d connections (load %d), want 3", i, links, pm.load.Load())
		}
		for _, v := range nodelay {
			if v != 1 {
				t.Errorf("loop %d: a client socket has TCP_NODELAY %d, want 1", i, v)
			}
		}
	}

	for _, c := range conns {
		c.Close()
	}
	for i, pm := range loops {
		deadline := time.Now().Add(10 * time.Second)
		for pm.load.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("loop %d still counts %d connections 10 s after their clients closed", i, pm.load.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestPumpServerFirstAndQuickClose: a backend that greets and closes at
// once, before the client has sent anything, is a connection that
// succeeded: the client reads the greeting and then the end of stream,
// and the backend is neither ejected nor counted as refused.
func TestPumpServerFirstAndQuickClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "bye\n")
			c.Close()
		}
	}()
	p := New(Config{EjectBase: time.Hour, EjectMax: time.Hour})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "quick", Addr: ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "bye\n" {
			t.Fatalf("connection %d read %q, %v; want the greeting and the end of stream", i, got, err)
		}
	}
	for _, st := range p.Backends() {
		if st.EjectedUntil.After(time.Now()) {
			t.Errorf("the backend that closed at once was ejected: %+v", st)
		}
	}
}

// TestPumpNodelayForeignListener: a listener that Listen did not open
// (served with Serve) has no TCP_NODELAY to pass on, so the loop sets it
// on each socket it accepts.
func TestPumpNodelayForeignListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "echo", Addr: echoServer(t)}}); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { p.Serve(ln); close(served) }()
	defer func() { p.Close(); <-served }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hi\n")
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "hi\n" {
		t.Fatalf("echoed %q, %v", got, err)
	}
	loops := currentLoops()
	seen := 0
	for _, pm := range loops {
		_, nodelay := clientSockets(pm)
		for _, v := range nodelay {
			seen++
			if v != 1 {
				t.Errorf("the accepted socket has TCP_NODELAY %d, want 1", v)
			}
		}
	}
	if seen != 1 {
		t.Errorf("%d client sockets on the loops, want 1", seen)
	}
}

// TestPumpClientFirstQuickACKAfterSend: a backend socket dialled with
// Config.ClientFirst (TCP_QUICKACK off, so the handshake's last ACK waits
// for the request) is back to quick ACKs once the request has gone, so it
// does not hold its ACK of the backend's first answer (up to 40 ms, which
// a backend writing its answer in two pieces with Nagle on would wait
// for). Both kinds of dial: by address and by host name.
func TestPumpClientFirstQuickACKAfterSend(t *testing.T) {
	_, port, _ := net.SplitHostPort(echoServer(t))
	for _, backend := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		t.Run(backend, func(t *testing.T) {
			p := New(Config{ClientFirst: true})
			defer p.Close()
			if err := p.Update([]Backend{{ID: "echo", Addr: backend}}); err != nil {
				t.Fatal(err)
			}
			addr, err := p.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				t.Fatal(err)
			}
			if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "ping\n" {
				t.Fatalf("echo: %q, %v", got, err)
			}
			pumps.mu.Lock()
			loops := pumps.loops
			pumps.mu.Unlock()
			var quick []int
			for _, pm := range loops {
				onLoop(pm, func() {
					for _, e := range pm.ends {
						if e == &e.l.ends[1] {
							v, err := unix.GetsockoptInt(e.fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK)
							if err != nil || e.holdACK {
								v = -1
							}
							quick = append(quick, v)
						}
					}
				})
			}
			if len(quick) != 1 || quick[0] != 1 {
				t.Fatalf("TCP_QUICKACK of the backend sockets after the request: %v, want [1]", quick)
			}
		})
	}
}

// echoProcess starts the test binary as an echo server in a process of
// its own (TestMain), and returns its address.
func echoProcess(t testing.TB) string {
	t.Helper()
	return helperProcess(t, "BERTH_MESH_TEST_ECHO=1")
}

// helperProcess starts the test binary with env, in a process of its own
// that runs until the test ends (TestMain), and returns the first line it
// prints.
func helperProcess(t testing.TB, env string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("helper process (%s): %v", env, err)
	}
	return strings.TrimSpace(line)
}

// exchangeThrough opens a connection through a new proxy over an echo
// server in another process (so that its answers come whether or not this
// process's goroutines get a P), and returns the proxy, the loops and a
// function that makes one exchange on it.
func exchangeThrough(t *testing.T) (*Proxy, []*pump, func(i int)) {
	t.Helper()
	noPumpUsers(t)
	p := New(Config{})
	t.Cleanup(func() { p.Close() })
	if err := p.Update([]Backend{{ID: "echo", Addr: echoProcess(t)}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	exchange := func(i int) {
		t.Helper()
		line := fmt.Sprintf("exchange %d\n", i)
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("exchange %d echoed %q, %v; want %q", i, got, err, line)
		}
	}
	exchange(0) // the loops run: this one went through them
	loops := currentLoops()
	return p, loops, exchange
}

// TestPumpHoldsWhileBusyAndParksWhenIdle: a loop that serves a steady
// exchange takes its next events in a hold (epoll_wait of its own,
// keeping its P), and once the traffic stops every loop parks in Go's
// poller, so that an idle proxy holds no P.
func TestPumpHoldsWhileBusyAndParksWhenIdle(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	_, loops, exchange := exchangeThrough(t)
	if len(loops) != 4 {
		t.Fatalf("%d loops with GOMAXPROCS 4, want 4", len(loops))
	}
	var serving *pump
	for _, pm := range loops {
		if pm.load.Load() == 1 {
			serving = pm
		}
	}
	if serving == nil {
		t.Fatal("no loop holds the connection")
	}
	// pumpHold holds in a row that find nothing send the loop to Go's
	// poller for pumpCold waits, so on a starved machine some exchanges
	// go without; 2,000 exchanges leave dozens of holds to succeed.
	before := serving.holds.Load()
	deadline := time.Now().Add(20 * time.Second)
	i := 1
	for ; i <= 2000 && serving.holds.Load() == before && time.Now().Before(deadline); i++ {
		exchange(i)
	}
	if serving.holds.Load() == before {
		t.Fatalf("after %d exchanges the loop serving them took no events in a hold", i-1)
	}
	t.Logf("the first hold with events came after %d exchanges", i-1)

	for i, pm := range loops {
		deadline := time.Now().Add(10 * time.Second)
		for !pm.asleep.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("loop %d, idle, is not parked in Go's poller after 10 s: it holds its P", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestPumpBusyLoopLetsGoPoll: with GOMAXPROCS 1, a loop that serves a
// flood from a load process of its own holds the only P, and the
// program's other goroutines still get their network reads: the loop
// watches Go's poller's own epoll set, and when that has events it
// passes through Go's poller. A probe goroutine makes round trips to an
// echo process meanwhile. How long each waits is measured by
// BenchmarkPumpNeighbourRoundTrip, not here: without passes the trips go
// on too, each waiting up to 10 ms for the scheduler's monitor.
func TestPumpBusyLoopLetsGoPoll(t *testing.T) {
	noPumpUsers(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := New(Config{})
	t.Cleanup(func() { p.Close() })
	if err := p.Update([]Backend{{ID: "echo", Addr: echoProcess(t)}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	helperProcess(t, "BERTH_MESH_TEST_LOAD="+addr.String())
	if goPoller.fd < 0 {
		t.Fatal("Go's poller's epoll set was not found: the loops never hold")
	}
	loops := currentLoops()
	if len(loops) != 1 {
		t.Fatalf("%d loops with GOMAXPROCS 1, want 1", len(loops))
	}
	pm := loops[0]

	probe, err := net.Dial("tcp", echoProcess(t))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	probe.SetDeadline(time.Now().Add(30 * time.Second))
	var trips atomic.Int64
	failed := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		b := []byte{1}
		for {
			select {
			case <-stop:
				failed <- nil
				return
			default:
			}
			if _, err := probe.Write(b); err != nil {
				failed <- err
				return
			}
			if _, err := io.ReadFull(probe, b); err != nil {
				failed <- err
				return
			}
			trips.Add(1)
		}
	}()

	holds, passes, trips0 := pm.holds.Load(), pm.passes.Load(), trips.Load()
	done := func() bool {
		return pm.holds.Load() > holds+100 && pm.passes.Load() >= passes+10 && trips.Load() >= trips0+10
	}
	deadline := time.Now().Add(20 * time.Second)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-failed; err != nil {
		t.Fatalf("the probe's round trips failed: %v", err)
	}
	h, ps, tr := pm.holds.Load()-holds, pm.passes.Load()-passes, trips.Load()-trips0
	if !done() {
		t.Fatalf("after 20 s under the flood: %d holds with the loop's own events, %d passes, %d probe round trips; want 100, 10, 10", h, ps, tr)
	}
	t.Logf("%d holds with the loop's own events, %d passes, %d probe round trips", h, ps, tr)
}

// TestPumpOneWatcherAmongManyLoops: with 64 loops, all holding under
// traffic, one watches Go's poller (its set holds Go's), and no switch
// fails: with every loop watching, the kernel refused the 51st (a file
// may have at most 50 wake-up paths four epoll sets down; found in
// review, where a process of 52 loops or more panicked).
func TestPumpOneWatcherAmongManyLoops(t *testing.T) {
	noPumpUsers(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(64))
	p := New(Config{})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "echo", Addr: echoProcess(t)}}); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if goPoller.fd < 0 {
		t.Fatal("Go's poller's epoll set was not found: the loops never hold")
	}
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 64 {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		conns = append(conns, c)
		readers = append(readers, bufio.NewReader(c))
	}
	loops := currentLoops()
	if len(loops) != 64 {
		t.Fatalf("%d loops with GOMAXPROCS 64, want 64", len(loops))
	}
	for round := range 50 {
		for i, c := range conns {
			line := fmt.Sprintf("connection %d round %d\n", i, round)
			if _, err := io.WriteString(c, line); err != nil {
				t.Fatal(err)
			}
			got, err := readers[i].ReadString('\n')
			if err != nil || got != line {
				t.Fatalf("connection %d echoed %q, %v; want %q", i, got, err, line)
			}
		}
	}
	watching, held := 0, 0
	for i, pm := range loops {
		var noHold, noCold bool
		onLoop(pm, func() { noHold, noCold = pm.noHold, pm.noCold })
		if noHold || noCold {
			t.Errorf("loop %d stopped switching (noHold %v, noCold %v)", i, noHold, noCold)
		}
		if pm.holds.Load() > 0 {
			held++
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", pm.epfd))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(info), fmt.Sprintf("tfd: %8d ", goPoller.fd)) {
			watching++
		}
	}
	if watching > 1 {
		t.Errorf("%d loops' sets hold Go's poller's, want at most 1", watching)
	}
	if held < 2 {
		t.Errorf("%d loops of 64 took events in a hold, want several", held)
	}
	t.Logf("%d loops took events in a hold; %d watching at the end", held, watching)
}

// TestPumpWithoutGoPollerNeverHolds: where Go's poller's epoll set was
// not found (no /proc), a loop could not tell when the program's other
// goroutines have events, so it never holds: it serves from Go's poller
// alone, as it did before holds.
func TestPumpWithoutGoPollerNeverHolds(t *testing.T) {
	bridge, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(bridge, true)
	f := os.NewFile(uintptr(bridge), "epoll")
	defer f.Close()
	goPoller.once.Do(func() { goPoller.fd, goPoller.wake = findGoPoller(bridge) }) // as the first loop would
	noPumpUsers(t)
	found := goPoller.fd
	goPoller.fd = -1                          // before the loops start (exchangeThrough: none runs now)
	t.Cleanup(func() { goPoller.fd = found }) // after they stop (the proxy's Close, a cleanup registered later)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, loops, exchange := exchangeThrough(t)
	for i := 1; i <= 500; i++ {
		exchange(i)
	}
	if n := loops[0].holds.Load(); n != 0 {
		t.Fatalf("%d holds without Go's poller's set, want none", n)
	}
}

// TestFindGoPoller: the epoll set found for one file given to Go's poller
// is the one found for another (Go's poller has one set), is neither of
// them, and lists both; a set not given to Go's poller finds none.
func TestFindGoPoller(t *testing.T) {
	given := func() int {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "epoll")
		t.Cleanup(func() { f.Close() })
		if err := f.SetReadDeadline(time.Time{}); err != nil {
			t.Fatalf("epoll set not in Go's poller: %v", err)
		}
		return fd
	}
	a, b := given(), given()
	ga, wa := findGoPoller(a)
	gb, wb := findGoPoller(b)
	if ga < 0 || ga != gb || ga == a || ga == b {
		t.Fatalf("found %d for %d and %d for %d; want one set, neither of them", ga, a, gb, b)
	}
	if wa < 0 || wa != wb {
		t.Fatalf("found the runtime's wake-up eventfd %d, then %d; want one", wa, wb)
	}
	if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", wa)); err != nil || link != "anon_inode:[eventfd]" {
		t.Fatalf("the wake-up descriptor %d is %q (%v), want an eventfd", wa, link, err)
	}
	info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", ga))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range []int{a, b} {
		if !strings.Contains(string(info), fmt.Sprintf("tfd: %8d ", fd)) {
			t.Errorf("the set found, %d, does not list %d:\n%s", ga, fd, info)
		}
	}

	alone, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(alone)
	if g, w := findGoPoller(alone); g != -1 || w != -1 {
		t.Fatalf("found %d and %d for a set not given to Go's poller, want -1 and -1", g, w)
	}
}

// BenchmarkPumpNeighbourRoundTrip is a round trip of another goroutine of
// the proxy's process, through Go's poller, to an echo process, while a
// load process floods the proxy's loops with back-to-back exchanges (to
// a second echo process): how long the program's other goroutines wait
// for their network reads while the loops hold their Ps (ns/op; with a
// loop that held every P and let only the scheduler's monitor poll Go's
// poller, 9.2 ms at p50; stop 18 of docs/mesh.md's step 8).
func BenchmarkPumpNeighbourRoundTrip(b *testing.B) {
	p := New(Config{})
	defer p.Close()
	if err := p.Update([]Backend{{ID: "echo", Addr: echoProcess(b)}}); err != nil {
		b.Fatal(err)
	}
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	helperProcess(b, "BERTH_MESH_TEST_LOAD="+addr.String())
	c, err := net.Dial("tcp", echoProcess(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	one := []byte{1}
	loops := currentLoops()
	count := func() (holds, passes int64) {
		for _, pm := range loops {
			holds += pm.holds.Load()
			passes += pm.passes.Load()
		}
		return
	}
	h0, p0 := count()
	n := 0
	for b.Loop() {
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		n++
	}
	h1, p1 := count()
	b.ReportMetric(float64(h1-h0)/float64(n), "holds/op")
	b.ReportMetric(float64(p1-p0)/float64(n), "passes/op")
}
