package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// natsBus is a NATS server started outside this program (bench/ipc.sh
// starts one on a loopback port), reached with the Go client.
type natsBus struct {
	url    string
	phases int // each phase has its own subjects
}

func (b *natsBus) name() string { return "NATS" }

func (b *natsBus) open(ctx context.Context, sc *scenario, recv func(int, []byte)) (conns, error) {
	b.phases++
	prefix := fmt.Sprintf("bench.%s.%d.", sc.name, b.phases)
	subject := func(p int) string {
		if sc.broadcast {
			return prefix + "all"
		}
		return fmt.Sprintf("%sp%d", prefix, p)
	}
	cs := &natsConns{ncs: make([]*nats.Conn, sc.peers), subj: make([]string, sc.peers), closed: make([]chan struct{}, sc.peers)}
	for p := range sc.peers {
		closed := make(chan struct{})
		nc, err := nats.Connect(b.url, nats.Name(peerID(p)), nats.NoReconnect(), nats.Timeout(10*time.Second),
			nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
		if err != nil {
			cs.close()
			return nil, fmt.Errorf("connect %s: %w", b.url, err)
		}
		cs.ncs[p], cs.closed[p] = nc, closed
		if len(sc.dests[p]) == 1 {
			cs.subj[p] = subject(sc.dests[p][0])
		} else if len(sc.dests[p]) > 1 {
			cs.subj[p] = subject(-1)
		}
		if !sc.receives(p) {
			continue
		}
		// One subscription per peer: its callbacks run one at a time, on
		// the subscription's goroutine.
		_, err = nc.Subscribe(subject(p), func(m *nats.Msg) { recv(p, m.Data) })
		if err == nil {
			err = nc.FlushTimeout(10 * time.Second) // the server has the subscription
		}
		if err != nil {
			cs.close()
			return nil, fmt.Errorf("subscribe peer %d: %w", p, err)
		}
	}
	return cs, nil
}

// natsConns are a scenario's NATS connections.
type natsConns struct {
	ncs    []*nats.Conn
	subj   []string // what each peer publishes to
	closed []chan struct{}
	once   sync.Once
}

func (cs *natsConns) send(p int, msg []byte) error { return cs.ncs[p].Publish(cs.subj[p], msg) }

// close drains every connection, which returns once its callbacks are done,
// or closes it after 5 s.
func (cs *natsConns) close() {
	cs.once.Do(func() {
		for _, nc := range cs.ncs {
			if nc != nil && nc.Drain() != nil {
				nc.Close()
			}
		}
		for p, nc := range cs.ncs {
			if nc == nil {
				continue
			}
			select {
			case <-cs.closed[p]:
			case <-time.After(5 * time.Second):
				nc.Close()
			}
		}
	})
}
