package lan_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// TestStalledMasterLink: a master that reads nothing while it goes on
// sending pings (so it is heard, and not lost by the TTL) is disconnected
// once a write to it has waited the TTL (5 s here); meanwhile the writers
// go on with the other masters' frames: m1 gets all of its offers before
// the stalled link is cut.
func TestStalledMasterLink(t *testing.T) {
	var logs syncBuffer
	srv, c := startServer(t, lan.Config{MasterTTL: 5 * time.Second, BidWindow: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil))})
	cut := dialStalled(t, srv, id2, "stalled")
	m1 := dialMaster(t, srv, "", id1, "m1")

	// Offers carry the need: 100 of about 40 KiB each (a master gets at
	// most 128 at a time) are far more than the stalled link's socket
	// buffers take.
	args := []string{"/bin/big"}
	for i := range 64 {
		args = append(args, fmt.Sprintf("--arg%02d=%s", i, strings.Repeat("x", 600)))
	}
	const n = 100
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "big", Command: args, Instances: intp(n), Protocols: []needs.Protocol{needs.HTTP}}); err != nil {
		t.Fatalf("AddNeed: %v", err)
	}
	offered := map[string]bool{}
	for len(offered) < n {
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
	select {
	case err := <-cut:
		t.Fatalf("the stalled link was cut (%v) before m1 had its offers: m1 waited for it", err)
	default:
	}
	select {
	case err := <-cut:
		t.Logf("stalled master's pings failed: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled master's link is still open 20s after the offers")
	}
	// The link's reader may see the close before the writer does, so the
	// log need not say "link write failed"; but never a full queue.
	if strings.Contains(logs.String(), "outgoing queue full") {
		t.Error("the stalled link was closed for a full queue, not for its write timeout")
	}
	// m1's link is still served.
	select {
	case <-m1.pinged: // one from before
	default:
	}
	select {
	case <-m1.pinged:
	case <-time.After(10 * time.Second):
		t.Error("m1 got no ping after the stalled link was closed")
	}
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
