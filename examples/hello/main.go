// Command hello is a small server to run under berth. It listens on every
// port berth gave it (HTTP answers "hello from <instance>"; tcp and ws ports
// echo a line back), tells its master it is ready, sends heartbeats, and
// exits cleanly on a stop request or SIGTERM.
//
// It takes its sockets with child.Listen, so it serves the sockets its
// master bound when the need asks for socket activation, and binds its
// ports itself otherwise. Run outside berth it listens on 127.0.0.1:8080.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"berth/child"
	"berth/needs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	env, err := child.FromEnv()
	if err != nil {
		return err
	}
	if env.Host == "" {
		env.Host = "127.0.0.1"
	}
	if len(env.Ports) == 0 && env.Pipe == "" {
		env.Ports = map[needs.Protocol]int{needs.HTTP: 8080}
	}
	name := env.Instance
	if name == "" {
		name = "hello"
	}
	if names := os.Getenv(child.EnvListenNames); names != "" { // read before Listen unsets it
		log.Printf("%s: socket activation: inherited %s", name, names)
	}
	var conns atomic.Int64
	var servers []func()
	for p, port := range env.Ports {
		ln, err := child.Listen(string(p))
		if errors.Is(err, child.ErrNoPort) { // outside berth: the default port
			ln, err = net.Listen("tcp", net.JoinHostPort(env.Host, fmt.Sprint(port)))
		}
		if err != nil {
			return fmt.Errorf("listen %s: %w", p, err)
		}
		if p == needs.HTTP {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "hello from %s\n", name)
			}), ConnState: func(_ net.Conn, s http.ConnState) {
				switch s {
				case http.StateNew:
					conns.Add(1)
				case http.StateClosed, http.StateHijacked:
					conns.Add(-1)
				}
			}}
			go srv.Serve(ln)
			servers = append(servers, func() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			})
			continue
		}
		go echo(ln, &conns)
		servers = append(servers, func() { ln.Close() })
	}
	log.Printf("%s listening on %s %v", name, env.Host, env.Ports)

	var stopReq <-chan struct{}
	if c, err := child.Open(ctx); err == nil {
		defer c.Close()
		c.Ready()
		c.StartHeartbeat(ctx, 5*time.Second, func() int { return int(conns.Load()) })
		ch := make(chan struct{})
		go func() {
			select {
			case <-c.Stop():
				close(ch)
			case <-ctx.Done():
			}
		}()
		stopReq = ch
	} else if !errors.Is(err, child.ErrNoPipe) {
		log.Printf("control pipe: %v (running without it)", err)
	}
	select {
	case <-ctx.Done():
	case <-stopReq:
	}
	log.Printf("%s stopping", name)
	for _, s := range servers {
		s()
	}
	return nil
}

func echo(ln net.Listener, conns *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s\n", sc.Text())
			}
		}()
	}
}
