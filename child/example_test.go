package child_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"berth/child"
	"berth/needs"
	"berth/pipes"
)

// A child HTTP server: it listens where berth says (on the socket its
// master passed when the need asks for socket activation, else on
// BERTH_HOST:BERTH_PORT_HTTP), tells the master it is ready, sends
// heartbeats, and shuts down gracefully on a stop request or SIGTERM. It
// also runs outside berth, without the pipe.
func Example_server() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	env, err := child.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	ln, err := child.Listen(string(needs.HTTP)) // inherited socket, or BERTH_HOST:BERTH_PORT_HTTP
	if errors.Is(err, child.ErrNoPort) {
		ln, err = net.Listen("tcp", "localhost:8080") // not under berth
	}
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", env.Instance)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// The pipe is optional: without it the child just runs.
	var stopReq <-chan pipes.ChildStop // nil, so never ready, without a pipe
	conn, err := child.Open(ctx)
	switch {
	case errors.Is(err, child.ErrNoPipe):
	case err != nil:
		log.Printf("berth pipe: %v; running without it", err)
	default:
		defer conn.Close()
		conn.Ready() // an ErrDisconnected is fine: the Conn says ready on reconnecting
		conn.StartHeartbeat(ctx, 10*time.Second, nil)
		stopReq = conn.Stop()
	}

	grace := 5 * time.Second
	select {
	case <-ctx.Done():
	case s := <-stopReq:
		log.Printf("stop requested: %s", s.Reason)
		if s.GraceMS > 0 {
			grace = time.Duration(s.GraceMS) * time.Millisecond * 9 / 10
		}
	case err := <-served:
		log.Fatal(err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		log.Print(err)
	}
	<-served
}
