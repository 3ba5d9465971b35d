package child

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"berth/needs"
)

// Defaults for the zero fields of IPCOptions.
const (
	DefaultIPCQueueLen     = 256
	DefaultIPCPingAfter    = 5 * time.Second
	DefaultIPCPongTimeout  = 10 * time.Second
	DefaultIPCReconnectMin = 100 * time.Millisecond
	DefaultIPCReconnectMax = 5 * time.Second
	DefaultIPCMaxLarge     = 16 << 20
)

// Bounds that are not options.
const (
	// ipcCloseGrace is how long Close waits for the hub to answer its close
	// frame before it cuts the connection.
	ipcCloseGrace = time.Second
	// ipcFetchTimeout bounds the download of one large message.
	ipcFetchTimeout = 30 * time.Second
	// ipcVersion is the protocol version the client announces.
	ipcVersion = "1.0.0"
)

// IPCOptions configures an IPC client. Addr and Group are required (see
// IPCFromEnv); a zero field of the others takes its default.
type IPCOptions struct {
	// Addr is the hub's address: ws://host:port, or wss:// for TLS.
	Addr string
	// Group is the group to join; only its peers see the client's
	// messages.
	Group string
	// Token is the hub's token; empty when it has none.
	Token string
	// ID is the client's peer id: at least 5 characters, no ';'. It
	// defaults to "berth-" and 10 random hex digits. A second connection
	// with the same id replaces the first at the hub, so two clients
	// must not share one.
	ID string

	// OnMessage receives each message a peer sent to this client or to
	// the group, large ones included. OnJoin and OnLeave receive the id
	// of a peer that joined or left the group. OnConnect is called each
	// time the client is connected, the first time included, and
	// OnDisconnect each time the connection drops, with the reason. All
	// are optional and called one at a time, from one goroutine, in the
	// order the hub sent the frames; see IPC.
	OnMessage    func(msg []byte)
	OnJoin       func(id string)
	OnLeave      func(id string)
	OnConnect    func()
	OnDisconnect func(err error)

	// QueueLen is how many messages and notices may wait for the
	// callbacks (default 256); beyond it the newest are dropped.
	QueueLen int
	// PingAfter is how long the hub may be silent before the client
	// pings it (default 5 s). PongTimeout is how long the client then
	// waits for any frame before it drops the connection and
	// reconnects (default 10 s); it also bounds a dial and a write.
	PingAfter, PongTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the wait between reconnection
	// attempts (default 100 ms and 5 s): it doubles after each failed
	// attempt, and each wait is jittered by ±20%.
	ReconnectMin, ReconnectMax time.Duration
	// MaxLarge is the largest large message the client downloads
	// (default 16 MiB); a larger one is dropped.
	MaxLarge int
	// HTTPClient dials the WebSocket and carries large messages. By
	// default the client uses one of its own, whose idle connections
	// Close closes.
	HTTPClient *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// IPCStats are an IPC client's totals since DialIPC.
type IPCStats struct {
	Sent          int64 // messages sent by Send and Broadcast, large ones included
	Received      int64 // messages given to OnMessage, large ones included
	LargeSent     int64 // of Sent, those that went by POST
	LargeReceived int64 // of Received, those fetched by GET
	Dropped       int64 // messages and notices lost: queue full, or a large message not fetched
	Reconnects    int64 // connections after the first
}

// IPC is a client of berth's IPC hub (package ipchub, or an
// acebase-ipc-server). It stays connected until Close: when the
// connection drops it redials by itself, and a hub silent for PingAfter is
// pinged and, without an answer within PongTimeout, redialled.
//
// Frames from the hub are read by one goroutine and queued, at most
// QueueLen of them, for another that calls the callbacks one at a time, in
// the order the hub sent them; a large message is downloaded in its place
// in that order. The reader never waits for the callbacks: when the queue
// is full, the newest message or notice is dropped, counted in
// IPCStats.Dropped and logged. Memory is thus bounded by QueueLen frames of
// the hub's maxPayload, plus one large message of at most MaxLarge.
//
// All methods may be called concurrently, from the callbacks too, except
// Close: a callback that calls Close deadlocks, since Close waits for the
// callbacks to return.
type IPC struct {
	opts     IPCOptions
	connURL  string // ws://host:port/GROUP/connect?...
	httpBase string // http://host:port/GROUP
	http     *http.Client
	ownHTTP  bool // http is ours, closed by Close
	log      *slog.Logger
	epoch    time.Time // the origin of ipcConn.lastRecv, for monotonic times

	ctx    context.Context // done at Close; every owned goroutine stops on it
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // the run and deliver goroutines

	events chan ipcEvent // from the reader to deliver; never closed

	// Used by the run goroutine only (and DialIPC before it starts).
	dropping bool          // the last enqueue dropped; log the next drop only after a success
	delay    time.Duration // the next wait before redialling

	sent, received, largeSent, largeReceived, dropped, reconnects atomic.Int64

	mu     sync.Mutex    // Protects following.
	conn   *ipcConn      // the live connection; nil while reconnecting
	up     chan struct{} // closed while conn is not nil; replaced when it drops
	closed bool
}

// DialIPC connects to the hub of opts.Addr, joins opts.Group and waits for
// the hub's welcome. ctx bounds this first connection only: the client and
// its goroutines live until Close. An error of the hub (a bad token, a bad
// id) is returned with the status and text the hub answered.
func DialIPC(ctx context.Context, opts IPCOptions) (*IPC, error) {
	c, err := newIPC(opts)
	if err != nil {
		return nil, err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		c.closeHTTP()
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.conn = conn
	close(c.up)
	c.log.Debug("ipc connected", "maxPayload", conn.maxPayload)
	c.enqueue(ipcEvent{kind: evConnect})
	c.wg.Go(c.deliver)
	c.wg.Go(func() { c.run(conn) })
	return c, nil
}

// newIPC checks opts, fills in the defaults and builds the URLs.
func newIPC(opts IPCOptions) (*IPC, error) {
	u, err := parseIPCAddr("IPCOptions.Addr", opts.Addr)
	if err != nil {
		return nil, err
	}
	if opts.Group == "" {
		return nil, &needs.FieldError{Field: "IPCOptions.Group", Msg: "empty"}
	}
	if opts.ID == "" {
		opts.ID = randomIPCID()
	} else if err := checkIPCID(opts.ID); err != nil {
		return nil, &needs.FieldError{Field: "IPCOptions.ID", Msg: err.Error()}
	}
	setDefault(&opts.QueueLen, DefaultIPCQueueLen)
	setDefault(&opts.PingAfter, DefaultIPCPingAfter)
	setDefault(&opts.PongTimeout, DefaultIPCPongTimeout)
	setDefault(&opts.ReconnectMin, DefaultIPCReconnectMin)
	setDefault(&opts.ReconnectMax, DefaultIPCReconnectMax)
	opts.ReconnectMax = max(opts.ReconnectMax, opts.ReconnectMin)
	setDefault(&opts.MaxLarge, DefaultIPCMaxLarge)
	c := &IPC{opts: opts, http: opts.HTTPClient, log: opts.Logger, epoch: time.Now(),
		events: make(chan ipcEvent, opts.QueueLen), up: make(chan struct{}), delay: opts.ReconnectMin}
	if c.http == nil {
		c.http = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownHTTP = true
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("group", opts.Group, "id", opts.ID)
	group := "/" + url.PathEscape(opts.Group)
	q := url.Values{"id": {opts.ID}, "v": {ipcVersion}, "t": {opts.Token}}
	c.connURL = u.String() + group + "/connect?" + q.Encode()
	u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
	c.httpBase = u.String() + group
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// parseIPCAddr checks a hub address, ws://host[:port] or wss://, and
// returns it without a trailing slash. field names it in the error.
func parseIPCAddr(field, addr string) (*url.URL, error) {
	bad := func(why string) error {
		return &needs.FieldError{Field: field, Msg: fmt.Sprintf("%q %s; want ws://host:port", addr, why)}
	}
	if addr == "" {
		return nil, bad("is empty")
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil:
		return nil, bad("is not a URL")
	case u.Scheme != "ws" && u.Scheme != "wss":
		return nil, bad("is not a ws:// or wss:// URL")
	case u.Hostname() == "":
		return nil, bad("has no host")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.User != nil:
		return nil, bad("has more than a scheme, host and port")
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if _, err := parsePort(p); err != nil {
			return nil, bad("has a bad port (1-65535)")
		}
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// checkIPCID says why id cannot be a peer id, or returns nil.
func checkIPCID(id string) error {
	switch {
	case utf8.RuneCountInString(id) < 5:
		return fmt.Errorf("%q is shorter than 5 characters", id)
	case strings.Contains(id, ";"):
		return fmt.Errorf("%q contains ';'", id)
	}
	return nil
}

// randomIPCID returns "berth-" and 10 random hex digits.
func randomIPCID() string {
	var b [5]byte
	rand.Read(b[:])
	return "berth-" + hex.EncodeToString(b[:])
}

// ID returns the client's peer id.
func (c *IPC) ID() string { return c.opts.ID }

// Send sends msg to the peer id of the group. It returns once the frame is
// written to the hub (or, for a large message, the hub stored it); there
// is no delivery receipt, and the hub drops a message to a peer that is
// not connected. While the client is reconnecting it returns an error
// wrapping ErrIPCDisconnected at once. ctx bounds the wait for the socket
// and a large message's POST.
func (c *IPC) Send(ctx context.Context, id string, msg []byte) error {
	switch {
	case id == "", strings.Contains(id, ";"):
		return &needs.FieldError{Field: "peer id", Msg: fmt.Sprintf("%q is empty or contains ';'", id)}
	case id == "all":
		return &needs.FieldError{Field: "peer id", Msg: `"all" names every peer: use Broadcast`}
	}
	return c.send(ctx, toFrame(id, msg), msg)
}

// Broadcast sends msg to every other peer of the group, as Send does.
func (c *IPC) Broadcast(ctx context.Context, msg []byte) error {
	return c.send(ctx, broadcastFrame(msg), msg)
}

// send writes frame, whose payload is msg, on the live connection, or POSTs
// it when it is over the hub's maxPayload or msg would read as a notice.
func (c *IPC) send(ctx context.Context, frame, msg []byte) error {
	conn, err := c.live()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send ipc message: %w", context.Cause(ctx))
	}
	if len(frame) <= conn.maxPayload && !needsLarge(msg) {
		if _, err := conn.write(ctx, frame, c.opts.PongTimeout); err != nil {
			return c.writeError(ctx, conn, err)
		}
		c.sent.Add(1)
		return nil
	}
	// The POST must not overtake the frames written before it: the hub
	// reads the socket and the POST in different goroutines.
	if err := conn.barrier(ctx, c.opts.PongTimeout); err != nil {
		return c.writeError(ctx, conn, err)
	}
	if err := c.postLarge(ctx, frame); err != nil {
		return err
	}
	c.largeSent.Add(1)
	c.sent.Add(1)
	return nil
}

// writeError says why a write on conn failed; unless ctx ended, conn is
// broken and closed, so that the reader notices and reconnects.
func (c *IPC) writeError(ctx context.Context, conn *ipcConn, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("send ipc message: %w", context.Cause(ctx))
	}
	// Forgotten at once, as the reader will forget it when it sees the
	// close: a caller told ErrIPCDisconnected must not find the client
	// still connected (WaitConnected returning at once) in between.
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
		c.up = make(chan struct{})
	}
	c.mu.Unlock()
	conn.ws.CloseNow()
	if c.ctx.Err() != nil {
		return ErrIPCClosed
	}
	return fmt.Errorf("send ipc message: %w: %w", ErrIPCDisconnected, err)
}

// live returns the live connection or says why there is none.
func (c *IPC) live() (*ipcConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, ErrIPCClosed
	case c.conn == nil:
		return nil, fmt.Errorf("send ipc message: %w", ErrIPCDisconnected)
	}
	return c.conn, nil
}

// WaitConnected waits until the client is connected to the hub, which it
// is at once unless it is reconnecting. It returns ctx's error when ctx is
// done first, and ErrIPCClosed after Close.
func (c *IPC) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		closed, conn, up := c.closed, c.conn, c.up
		c.mu.Unlock()
		switch {
		case closed:
			return ErrIPCClosed
		case conn != nil:
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-c.ctx.Done():
			return ErrIPCClosed
		case <-up:
		}
	}
}

// Stats returns the client's counters.
func (c *IPC) Stats() IPCStats {
	return IPCStats{
		Sent:          c.sent.Load(),
		Received:      c.received.Load(),
		LargeSent:     c.largeSent.Load(),
		LargeReceived: c.largeReceived.Load(),
		Dropped:       c.dropped.Load(),
		Reconnects:    c.reconnects.Load(),
	}
}

// Close leaves the hub (a close frame, then at most a second for the
// hub's answer), stops reconnecting, and waits for every goroutine of the
// client, a callback in progress included. Events still queued are
// discarded. It is idempotent.
func (c *IPC) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel(ErrIPCClosed)
	c.wg.Wait()
	c.closeHTTP()
	return nil
}

// closeHTTP closes the idle connections of the client's own HTTP client.
func (c *IPC) closeHTTP() {
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
}
