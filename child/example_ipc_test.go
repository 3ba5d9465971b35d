package child_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"berth/child"
	"berth/ipchub"
)

// Two processes of a group talk through berth's IPC hub. Under berth,
// IPCFromEnv gives the hub's address, token and group; here, outside
// berth, the example serves a hub of its own on a loopback port.
func ExampleDialIPC() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	opts, err := child.IPCFromEnv()
	if errors.Is(err, child.ErrNoIPC) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		hub := ipchub.NewServer(ipchub.Options{})
		srv := &http.Server{Handler: hub}
		go srv.Serve(ln)
		defer srv.Close()
		defer hub.Close() // runs first
		opts = child.IPCOptions{Addr: "ws://" + ln.Addr().String(), Group: "example"}
	} else if err != nil {
		log.Fatal(err) // names the malformed variable
	}

	// The callbacks run one at a time, in the hub's order; they hand the
	// events to the main goroutine here.
	events := make(chan string, 16)
	a := opts
	a.ID = "peer-a"
	a.OnJoin = func(id string) { events <- id + " joined" }
	a.OnLeave = func(id string) { events <- id + " left" }
	a.OnMessage = func(msg []byte) { events <- fmt.Sprintf("message of %d bytes: %.5s", len(msg), msg) }
	ipcA, err := child.DialIPC(ctx, a)
	if err != nil {
		log.Fatal(err)
	}
	defer ipcA.Close()

	b := opts
	b.ID = "peer-b"
	ipcB, err := child.DialIPC(ctx, b)
	if err != nil {
		log.Fatal(err)
	}
	if err := ipcB.Send(ctx, "peer-a", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	// Over the hub's maxPayload (16384 bytes): it goes by HTTP, and
	// arrives the same way, in its place.
	if err := ipcB.Broadcast(ctx, bytes.Repeat([]byte("x"), 100_000)); err != nil {
		log.Fatal(err)
	}
	ipcB.Close()

	for range 4 {
		fmt.Println(<-events)
	}
	// Output:
	// peer-b joined
	// message of 5 bytes: hello
	// message of 100000 bytes: xxxxx
	// peer-b left
}
