package master_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/child"
	"berth/pipes"
)

// runLegacyClient is a child that knows nothing of berth but a host:port
// in its arguments (args[0]) and its port: each connection to its port
// dials that address, reads one line and answers it, or "error: ..." when
// the connection fails or ends without a line.
func runLegacyClient(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: legacy-client HOST:PORT")
		return 2
	}
	target := args[0]
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("BERTH_HOST"), os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 4
		}
		go func() {
			defer c.Close()
			c.Write([]byte(askLine(target) + "\n"))
		}()
	}
}

// askLine dials addr and reads a line from it.
func askLine(addr string) string {
	up, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer up.Close()
	up.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(up).ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// meshReport is what a mesh-child answers on its port, as one JSON line.
type meshReport struct {
	Instance string   `json:"instance"`
	Changes  int      `json:"changes"`
	Readies  int      `json:"readies"`
	Last     []string `json:"last"`     // peers of the last ready or change
	Targets  []string `json:"targets"`  // targets of its first upstream, at the last ready or change
	Upstream string   `json:"upstream"` // address of its first upstream in the last ready or change
	Errors   []string `json:"errors"`   // every mesh.error message
	Signals  int      `json:"signals"`  // SIGHUPs received
	File     []string `json:"file"`     // its peers file, read now
	FileErr  string   `json:"file_err,omitempty"`
}

// runMeshChild is a child that uses the SDK: it says ready, follows its
// lifecycle events and SIGHUP, prints every event to its log ("event
// <type> ..."), and answers each connection to its ports with a
// meshReport.
func runMeshChild() int {
	hup := make(chan os.Signal, 16)
	signal.Notify(hup, syscall.SIGHUP) // first: a peers signal may come early
	env, err := child.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	rep := meshReport{Instance: env.Instance, Errors: []string{}}
	for _, port := range env.Ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(env.Host, fmt.Sprint(port)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				r := rep
				mu.Unlock()
				r.File = nil
				if ps, err := child.ReadPeers(env.PeersFile); err != nil {
					r.FileErr = err.Error()
				} else {
					r.File = peerNames(ps)
				}
				b, _ := json.Marshal(r)
				c.Write(append(b, '\n'))
				c.Close()
			}
		}()
	}
	go func() {
		for range hup {
			mu.Lock()
			rep.Signals++
			mu.Unlock()
			fmt.Println("signal HUP")
		}
	}()
	c, err := child.Open(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	c.Ready()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	for {
		select {
		case ev := <-c.Events():
			mu.Lock()
			switch ev.Type {
			case child.EventReady, child.EventChange:
				if ev.Type == child.EventReady {
					rep.Readies++
				} else {
					rep.Changes++
				}
				rep.Last = peerNames(ev.State.Peers)
				rep.Targets, rep.Upstream = nil, ""
				if len(ev.State.Upstreams) > 0 {
					rep.Targets = peerNames(ev.State.Upstreams[0].Targets)
					rep.Upstream = ev.State.Upstreams[0].Address
				}
				fmt.Printf("event %s peers=%v targets=%v\n", ev.Type, rep.Last, rep.Targets)
			case child.EventError:
				rep.Errors = append(rep.Errors, ev.Error.Message)
				fmt.Printf("event error upstream=%s need=%s: %s\n", ev.Error.Upstream, ev.Error.Need, ev.Error.Message)
			case child.EventClose:
				fmt.Printf("event close %s\n", ev.Reason)
			}
			mu.Unlock()
		case <-c.Stop():
			return drainClose(c)
		case <-term:
			return drainClose(c)
		}
	}
}

func peerNames(ps []pipes.Peer) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Instance)
	}
	return out
}

// drainClose waits a second at most for the close event that comes with
// a stop, and logs it.
func drainClose(c *child.Conn) int {
	deadline := time.After(time.Second)
	for {
		select {
		case ev := <-c.Events():
			if ev.Type == child.EventClose {
				fmt.Printf("event close %s\n", ev.Reason)
				return 0
			}
		case <-deadline:
			return 0
		}
	}
}
