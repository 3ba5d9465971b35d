// Command tiny is the program bench/procs runs N times: it opens the
// control pipe named by BERTH_PIPE (package child), says ready at once and
// waits for a stop request, SIGTERM or SIGINT. It has no port. Outside
// berth and without BERTH_PIPE it exits with status 2.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"berth/child"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := child.Open(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tiny:", err)
		os.Exit(2)
	}
	defer conn.Close()
	if err := conn.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, "tiny: ready:", err)
		os.Exit(1)
	}
	select {
	case <-ctx.Done():
	case <-conn.Stop():
	}
}
