// Command gateway is the worked example of docs/gateway.md: a small HTTP
// service behind berth's WebSocket gateway. Declare it with
//
//	lanmanager need add chat --instances 2 --protocols http --gateway -- go run ./examples/gateway
//
// and connect at ws://GATEWAY/chat. It answers:
//
//	/on_connect   200, or 403 when the upgrade request has no "name" in its query
//	/echo         the message's payload, with the instance's name
//	/later        202 at once; a second later the result is pushed to the
//	              client through the postback URL, with BERTH_GATEWAY_TOKEN
//	/on_disconnect 200 (logged)
//
// It listens on BERTH_HOST:BERTH_PORT_HTTP (127.0.0.1:8081 outside berth)
// and says ready on its pipe.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
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
	host, port := env.Host, env.Ports[needs.HTTP]
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		port = 8081
	}
	name := env.Instance
	if name == "" {
		name = "gateway-example"
	}
	token := os.Getenv("BERTH_GATEWAY_TOKEN")
	var pushes sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("POST /on_connect", func(w http.ResponseWriter, r *http.Request) {
		// The gateway passes the upgrade request's headers; the path and
		// query the client used are not among them, so this example asks
		// for a header instead: X-Name.
		if r.Header.Get("X-Name") == "" {
			http.Error(w, "say who you are: an X-Name header", http.StatusForbidden)
			return
		}
		log.Printf("%s: %s connected as %s", name, r.Header.Get("X-Name"), r.Header.Get("connection-id"))
	})
	mux.HandleFunc("POST /on_disconnect", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s: %s left", name, r.Header.Get("connection-id"))
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var payload any
		json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&payload)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"instance": name, "echo": payload})
	})
	mux.HandleFunc("POST /later", func(w http.ResponseWriter, r *http.Request) {
		postback, id := r.Header.Get("postback-url"), r.Header.Get("message-id")
		w.WriteHeader(http.StatusAccepted)
		pushes.Go(func() {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			if err := push(postback, token, map[string]any{"instance": name, "done": id}); err != nil {
				log.Printf("%s: push to %s: %v", name, postback, err)
			}
		})
	})
	ln, err := child.Listen(string(needs.HTTP))
	if errors.Is(err, child.ErrNoPort) {
		ln, err = net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	}
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	if c, err := child.Open(ctx); err == nil {
		c.Ready()
		defer c.Close()
	}
	log.Printf("%s: serving the gateway's requests on %s", name, ln.Addr())
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shut)
	pushes.Wait()
	return err
}

// push sends v to a client through the gateway's postback URL.
func push(postback, token string, v any) error {
	if _, err := url.Parse(postback); err != nil || postback == "" {
		return fmt.Errorf("postback-url %q: %v", postback, err)
	}
	b, _ := json.Marshal(v)
	req, err := http.NewRequest(http.MethodPost, postback, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}
