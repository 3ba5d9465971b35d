// Command gwservice is the service behind the gateway in the end-to-end
// conformance test (e2e/gateway_test.go): it echoes, streams 64 MiB in
// 32 KiB chunks (writing to GWSERVICE_STATE how much it wrote, and
// "blocked" once a write waited 300 ms), and dies mid-request.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"berth/child"
)

func main() {
	ln, err := child.Listen("http")
	if err != nil {
		log.Fatal(err)
	}
	state := os.Getenv("GWSERVICE_STATE")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /on_connect", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /on_disconnect", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /die", func(http.ResponseWriter, *http.Request) { os.Exit(3) })
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("y", 32<<10))
		var written, writing atomic.Int64
		done := make(chan struct{})
		defer close(done)
		go func() { // the watchdog: a write that waits is the client's backpressure
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				msg := fmt.Sprintf("%d", written.Load())
				if s := writing.Load(); s != 0 && time.Since(time.Unix(0, s)) > 300*time.Millisecond {
					msg += " blocked"
				}
				os.WriteFile(state+".tmp", []byte(msg), 0o600)
				os.Rename(state+".tmp", state)
			}
		}()
		for range 2048 {
			writing.Store(time.Now().UnixNano())
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			writing.Store(0)
			written.Add(int64(len(chunk)))
		}
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.URL.Path, r.Header.Get("message-id"), b)
	})
	go http.Serve(ln, mux)
	c, err := child.Open(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	c.Ready()
	<-c.Stop()
}
