package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/coder/websocket"

	"berth/ipchub"
)

// berthBus is berth's hub, served in this process on a loopback port picked
// by the kernel, and reached by real WebSocket connections speaking the hub
// protocol (docs/ipc.md), written here from that page.
type berthBus struct {
	hub    *ipchub.Server
	srv    *http.Server
	addr   string // host:port
	served chan error
	groups int          // groups used so far: each phase has its own
	client *http.Client // for websocket.Dial; nil: the default
}

// startBerth serves a hub. With coalesce, its clients' writes are
// coalesced (flushConn), as the NATS client's are.
func startBerth(coalesce bool) (*berthBus, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := &berthBus{hub: ipchub.NewServer(ipchub.Options{Logger: log}), addr: ln.Addr().String(), served: make(chan error, 1)}
	b.srv = &http.Server{Handler: b.hub, ReadHeaderTimeout: 10 * time.Second}
	if coalesce {
		b.client = coalescingClient()
	}
	go func() { b.served <- b.srv.Serve(ln) }()
	return b, nil
}

func (b *berthBus) name() string { return "berth" }

// close stops the hub, then the HTTP server, and waits for Serve.
func (b *berthBus) close() {
	b.hub.Close()
	b.srv.Close()
	<-b.served
}

func (b *berthBus) open(ctx context.Context, sc *scenario, recv func(int, []byte)) (conns, error) {
	b.groups++
	group := fmt.Sprintf("%s-%d", sc.name, b.groups)
	cs := &berthConns{peers: make([]*wsPeer, sc.peers)}
	for p := range sc.peers {
		wp, err := dialPeer(ctx, b.client, b.addr, group, p)
		if err != nil {
			cs.close()
			return nil, err
		}
		if !sc.broadcast && len(sc.dests[p]) == 1 {
			wp.prefix = []byte("to:" + peerID(sc.dests[p][0]) + ";")
		}
		cs.peers[p] = wp
		cs.wg.Go(func() {
			pprof.Do(context.Background(), pprof.Labels("side", "client"), func(context.Context) { wp.readLoop(p, recv) })
		})
	}
	return cs, nil
}

func peerID(p int) string { return fmt.Sprintf("bench-%02d", p) }

// wsPeer is one peer's connection to the hub.
type wsPeer struct {
	c      *websocket.Conn
	prefix []byte // "to:ID;" for a peer with one destination; none for a broadcast
	frame  []byte // the sender's buffer: prefix + message
}

// dialPeer connects peer p to group and reads its welcome frame: once that
// is read, the peer is a member of the group.
func dialPeer(ctx context.Context, client *http.Client, addr, group string, p int) (*wsPeer, error) {
	q := url.Values{"id": {peerID(p)}, "v": {"1.0.0"}, "t": {"undefined"}}
	u := "ws://" + addr + "/" + url.PathEscape(group) + "/connect?" + q.Encode()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	c.SetReadLimit(1 << 20)
	_, w, err := c.Read(dctx)
	if err != nil || len(w) < 8 || string(w[:8]) != "welcome:" {
		c.CloseNow()
		return nil, fmt.Errorf("peer %d: first frame %q (%v), want welcome", p, w, err)
	}
	return &wsPeer{c: c}, nil
}

// readLoop hands every frame to recv until the connection ends. It reads
// without a context: close ends it by closing the connection.
func (wp *wsPeer) readLoop(p int, recv func(int, []byte)) {
	buf := make([]byte, 4096)
	for {
		_, r, err := wp.c.Reader(context.Background())
		if err != nil {
			return
		}
		n := 0
		for {
			if n == len(buf) {
				buf = append(buf, make([]byte, len(buf))...)
			}
			k, err := r.Read(buf[n:])
			n += k
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
		}
		recv(p, buf[:n])
	}
}

// berthConns are a scenario's connections to the hub.
type berthConns struct {
	peers []*wsPeer
	wg    sync.WaitGroup // readers
	once  sync.Once
}

// send writes one text frame: the message, after "to:ID;" for a peer with
// one destination. Writes carry no context (a context with a deadline
// costs a timer per frame); the phase cuts the connections to end one.
func (cs *berthConns) send(p int, msg []byte) error {
	wp := cs.peers[p]
	wp.frame = append(append(wp.frame[:0], wp.prefix...), msg...)
	return wp.c.Write(context.Background(), websocket.MessageText, wp.frame)
}

func (cs *berthConns) close() {
	cs.once.Do(func() {
		for _, wp := range cs.peers {
			if wp != nil {
				wp.c.CloseNow()
			}
		}
	})
	cs.wg.Wait()
}
