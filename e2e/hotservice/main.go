// Command hotservice is the child of the end-to-end test of resource
// balancing across masters (e2e/mesh_test.go): it answers every HTTP
// request with "hello from <instance>", says ready, sends a heartbeat every
// second, and, when HOTSERVICE_BURN names its instance, keeps a core busy,
// which its heartbeats report.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"berth/child"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	env, err := child.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	ln, err := child.Listen("http")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", env.Instance)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	if os.Getenv("HOTSERVICE_BURN") == env.Instance {
		go func() {
			for ctx.Err() == nil { // a busy core, until the child is stopped
			}
		}()
	}
	if c, err := child.Open(ctx); err == nil {
		defer c.Close()
		c.Ready()
		c.StartHeartbeat(ctx, time.Second, nil)
		select {
		case <-c.Stop():
		case <-ctx.Done():
		}
	} else {
		<-ctx.Done()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
}
