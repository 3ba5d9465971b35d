package lan_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/lan"
	"berth/pipes"
)

// TestStalledMasterLink: a master that reads nothing while it goes on
// sending pings (so it is heard, and not lost by the TTL) is disconnected
// once a write to it has waited the TTL (5 s here); meanwhile the writers
// go on with the other masters' frames: m1 gets all of its offers before
// the stalled link is cut.
func TestStalledMasterLink(t *testing.T) {
	stalledMasters(t, 1)
}

// TestStalledMastersTakeNoWriter: with more stalled masters than the
// lanmanager has writers, extra writers start, and m1 still gets its
// offers before any stalled link is cut.
func TestStalledMastersTakeNoWriter(t *testing.T) {
	// 2 cores' worth of writers, so that every master gets every offer
	// (a round asks at most 8).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	srv := stalledMasters(t, lan.LinkWriterCount()+1)
	if n := srv.ExtraLinkWriters(); n == 0 {
		t.Error("no extra writer started while every writer waited for a stalled master")
	}
}

// stalledMasters links n masters that read nothing and one, m1, that
// reads, declares a need of 100 instances whose offers are about 40 KiB
// each (far more than a stalled link's socket buffers take), and checks
// that m1 gets every offer before any stalled link is cut, and that every
// stalled link is cut for its write timeout, never for a full queue.
func stalledMasters(t *testing.T, n int) *lan.Server {
	t.Helper()
	var logs syncBuffer
	srv, c := startServer(t, lan.Config{MasterTTL: 5 * time.Second, BidWindow: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil))})
	var cuts []<-chan error
	for i := range n {
		cuts = append(cuts, dialStalled(t, srv, fmt.Sprintf("%016x", 0xfedcba9876543210-uint64(i)), fmt.Sprintf("stalled%d", i)))
	}
	m1 := dialMaster(t, srv, "", id1, "m1")
	// m1 pings every heartbeat (a fifth of the TTL), as a real master does
	// (master.pingLink), so that the lanmanager hears it however long its
	// own pings wait behind the offers queued for m1: on a loaded machine
	// those took more than the TTL, and m1, which only answered them, was
	// declared lost.
	stopPings := make(chan struct{})
	pinging := make(chan struct{})
	go func() {
		defer close(pinging)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for id := uint64(1); ; id++ {
			select {
			case <-stopPings:
				return
			case <-tick.C:
				if m1.conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: id}) != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stopPings); <-pinging }()
	args := []string{"/bin/big"}
	for i := range 64 {
		args = append(args, fmt.Sprintf("--arg%02d=%s", i, strings.Repeat("x", 600)))
	}
	const instances = 100 // a master is offered at most 128 at a time
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "big", Command: args, Instances: intp(instances)}); err != nil {
		t.Fatalf("AddNeed: %v", err)
	}
	offered := map[string]bool{}
	for len(offered) < instances {
		msg := m1.next(20 * time.Second)
		if msg.Type != pipes.TypeOffer {
			continue
		}
		var o pipes.Offer
		if err := msg.Decode(&o); err != nil {
			t.Fatal(err)
		}
		offered[o.Instance] = true
	}
	for i, cut := range cuts {
		select {
		case err := <-cut:
			t.Fatalf("stalled master %d was cut (%v) before m1 had its offers: m1 waited for it", i, err)
		default:
		}
	}
	for i, cut := range cuts {
		select {
		case err := <-cut:
			t.Logf("stalled master %d's pings failed: %v", i, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("stalled master %d's link is still open 20s after the offers", i)
		}
	}
	// The link's reader may see the close before the writer does, so the
	// log need not say "link write failed"; but never a full queue.
	if strings.Contains(logs.String(), "outgoing queue full") {
		t.Error("a stalled link was closed for a full queue, not for its write timeout")
	}
	// m1's link is still served: the lanmanager answers its pings (a pong
	// from before, already queued, does not count).
	for drained := false; !drained; {
		select {
		case <-m1.msgs:
		default:
			drained = true
		}
	}
	deadline := time.After(10 * time.Second)
	for pong := false; !pong; {
		select {
		case msg, ok := <-m1.msgs:
			if !ok {
				t.Fatal("m1's link closed after the stalled links were")
			}
			pong = msg.Type == pipes.TypePong
		case <-deadline:
			t.Fatal("m1 got no pong within 10 s after the stalled links were closed")
		}
	}
	return srv
}

// dialStalled links a master that sends hello, then a ping every 100 ms,
// and never reads: its socket's receive buffer is 4 KiB. The channel gets
// the error of the first ping that fails.
func dialStalled(t *testing.T, srv *lan.Server, id, name string) <-chan error {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err == nil {
			err = serr
		}
		return err
	}}
	tr.DialContext = d.DialContext
	ws, _, err := websocket.Dial(t.Context(), "ws://"+srv.Addr()+"/v1/link", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial /v1/link: %v", err)
	}
	conn := pipes.NewConn(websocket.NetConn(context.Background(), ws, websocket.MessageBinary), pipes.MaxFrame)
	if err := conn.SendBody(pipes.TypeHello, 0, &pipes.Hello{ID: id, Name: name, Address: "127.0.0.1", Version: "test"}); err != nil {
		t.Fatalf("hello: %v", err)
	}
	cut := make(chan error, 1)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if err := conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePing, ID: 1}); err != nil {
				cut <- err
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		conn.Close()
		<-stopped
	})
	return cut
}
