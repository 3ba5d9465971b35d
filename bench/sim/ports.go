package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// portPool is a set of real loopback listeners that stand in for the fake
// children's ports: the lanmanager dials a started child's ports before it
// approves it, and each dial lands on one of these, which accepts and
// closes. Children share them: the lanmanager checks that a port answers,
// not who answers. Safe for concurrent use.
type portPool struct {
	lns     []net.Listener
	ports   []int
	next    atomic.Uint64
	accepts atomic.Int64 // connections accepted, i.e. port checks answered
	wg      sync.WaitGroup
}

// newPortPool listens on n ports of 127.0.0.1 picked by the kernel.
func newPortPool(n int) (*portPool, error) {
	if n < 1 {
		return nil, fmt.Errorf("port pool: size %d, want at least 1", n)
	}
	p := &portPool{}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("listen for the port pool: %w", err)
		}
		p.lns = append(p.lns, ln)
		p.ports = append(p.ports, ln.Addr().(*net.TCPAddr).Port)
		p.wg.Go(func() { p.serve(ln) })
	}
	return p, nil
}

// serve accepts and closes connections until the listener closes.
func (p *portPool) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE for a moment, as net/http backs off; the dialler retries
			continue
		}
		p.accepts.Add(1)
		c.Close()
	}
}

// port returns the next port, round robin.
func (p *portPool) port() int {
	return p.ports[int(p.next.Add(1)%uint64(len(p.ports)))]
}

// Close closes every listener and waits for their loops.
func (p *portPool) Close() {
	for _, ln := range p.lns {
		ln.Close()
	}
	p.wg.Wait()
}
