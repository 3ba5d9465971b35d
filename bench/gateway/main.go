// Command gateway measures berth's WebSocket gateway (issue 12): round
// trips per second and their p50/p99 for -clients clients each sending a
// message and waiting for its answer, through the gateway and, with the
// same requests, directly to the instance over HTTP keep-alive; then
// pushes per second through the management API (POST /@connections/{id})
// to those clients. The instance is an HTTP server of this program that
// answers each POST with a small JSON body; everything listens on
// 127.0.0.1, ports picked by the kernel; every loop is bounded by
// -duration and -max.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"berth/gateway"
)

func main() {
	clients := flag.Int("clients", 16, "concurrent clients")
	duration := flag.Duration("duration", 5*time.Second, "length of each phase")
	maxOps := flag.Int("max", 2_000_000, "most operations of a phase")
	flag.Parse()
	if err := run(*clients, *duration, *maxOps); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(1)
	}
}

func listen() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return ln, ln.Addr().String(), nil
}

// result is one phase's figures.
type result struct {
	ops      int
	rate     float64
	p50, p99 time.Duration
}

func summarize(lat []time.Duration, took time.Duration) result {
	slices.Sort(lat)
	r := result{ops: len(lat), rate: float64(len(lat)) / took.Seconds()}
	if len(lat) > 0 {
		r.p50 = lat[len(lat)/2]
		r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r
}

// phase runs work in n goroutines until d passes or max operations were
// made, collecting each operation's latency.
func phase(n int, d time.Duration, max int, work func(i int) error) (result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var count atomic.Int64
	var firstErr error
	deadline := time.Now().Add(d)
	began := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && count.Add(1) <= int64(max) {
				t := time.Now()
				if err := work(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(lat, time.Since(began)), firstErr
}

func run(nClients int, d time.Duration, max int) error {
	// The instance.
	body := []byte(`{"ok":true,"n":42}`)
	inst := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	iln, iaddr, err := listen()
	if err != nil {
		return err
	}
	go inst.Serve(iln)
	defer inst.Close()

	// The gateway.
	gw, err := gateway.NewServer(gateway.Options{Pick: func(string) (string, error) { return iaddr, nil }, Token: "bench",
		MaxRate: 1e9, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	gln, gaddr, err := listen()
	if err != nil {
		return err
	}
	gsrv := &http.Server{Handler: gw}
	go gsrv.Serve(gln)
	defer func() { gw.Close(); gsrv.Close() }()

	ctx := context.Background()
	conns := make([]*websocket.Conn, nClients)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, "ws://"+gaddr+"/svc", nil)
		if err != nil {
			return err
		}
		defer c.CloseNow()
		conns[i] = c
	}
	msg := []byte(`{"name":"echo","payload":{"q":1},"headers":{"message-id":"m"}}`)
	through, err := phase(nClients, d, max, func(i int) error {
		if err := conns[i].Write(ctx, websocket.MessageText, msg); err != nil {
			return err
		}
		_, b, err := conns[i].Read(ctx)
		if err == nil && !strings.Contains(string(b), `"statusCode":200`) {
			err = fmt.Errorf("answer %s", b)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("through the gateway: %w", err)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: nClients}}
	direct, err := phase(nClients, d, max, func(int) error {
		resp, err := client.Post("http://"+iaddr+"/echo", "application/json", strings.NewReader(`{"q":1}`))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}

	// Pushes: each pusher goroutine pushes to its own client, which reads.
	ids := gw.Connections()
	if len(ids) != nClients {
		return fmt.Errorf("%d connections listed, want %d", len(ids), nClients)
	}
	readers := sync.WaitGroup{}
	rctx, stop := context.WithCancel(ctx)
	for _, c := range conns {
		readers.Go(func() {
			for {
				if _, _, err := c.Read(rctx); err != nil {
					return
				}
			}
		})
	}
	pushBody := `{"push":1}`
	pushes, err := phase(nClients, d, max, func(i int) error {
		req, _ := http.NewRequest(http.MethodPost, "http://"+gaddr+"/@connections/"+ids[i].ID, strings.NewReader(pushBody))
		req.Header.Set("Authorization", "Bearer bench")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return errors.New(resp.Status)
		}
		return nil
	})
	stop()
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
	if err != nil {
		return fmt.Errorf("pushes: %w", err)
	}

	fmt.Printf("bench/gateway: %d clients, %s per phase, %d cores shared by clients, gateway and instance (loopback)\n\n", nClients, d, runtime.NumCPU())
	fmt.Printf("%-34s %12s %10s %10s\n", "", "per second", "p50", "p99")
	row := func(name string, r result) {
		fmt.Printf("%-34s %12.0f %10s %10s\n", name, r.rate, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	row("round trips through the gateway", through)
	row("requests direct (HTTP keep-alive)", direct)
	row("pushes (POST /@connections/{id})", pushes)
	fmt.Printf("\ngateway/direct: %.2f× the rate, +%s at p50\n", through.rate/direct.rate, (through.p50 - direct.p50).Round(time.Microsecond))
	return nil
}
