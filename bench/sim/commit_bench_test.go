package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// filledStore opens a store in a temporary directory holding n running
// instances (100 per need), closed when b ends, and returns the change that
// wrote them.
func filledStore(b *testing.B, n int) (*lan.Store, *lan.Change) {
	st, err := lan.OpenStore(filepath.Join(b.TempDir(), "lan.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ch := &lan.Change{}
	for i := range n {
		ch.PutInstances = append(ch.PutInstances, &needs.Instance{Need: fmt.Sprintf("sim-%04d", i/100), Index: i % 100,
			Name: needs.InstanceName(fmt.Sprintf("sim-%04d", i/100), i%100), State: needs.Running, Since: time.Now().UTC(),
			Placement: needs.Placement{Alloc: "0123456789abcdef0123", MasterID: "sim0123456789abcdef", Master: "m0001", Address: "127.0.0.1",
				PID: 100000 + i, Ports: map[needs.Protocol]int{needs.HTTP: 40000}, StartedAt: time.Now().UTC()}})
	}
	if err := st.Apply(ch); err != nil {
		b.Fatal(err)
	}
	if err := st.Checkpoint(); err != nil { // the records in lan.db, the journal empty
		b.Fatal(err)
	}
	return st, ch
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInstanceCommit is what one instance transition costs the
// lanmanager today: one journal frame, written and fdatasync'd
// (lan.Store.Apply), that holds one instance record, on a store that
// already holds n instances; with the share of the background checkpoints
// into lan.db that these writes cause (cpu-ms/op: the process's CPU time,
// both, per commit).
// The lanmanager makes at least two per placement (started, running), plus
// one per placer pass that grants, each under Server.mu.
func BenchmarkInstanceCommit(b *testing.B) {
	for _, n := range []int{5000, 50000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			st, ch := filledStore(b, n)
			i := 0
			cpu := cpuTime(b)
			for b.Loop() {
				in := ch.PutInstances[i%n]
				in.Since = time.Now().UTC()
				if err := st.Apply(&lan.Change{PutInstances: []*needs.Instance{in}}); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(cpuTime(b)-cpu)/1e6/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkBatchCommit is the committer's case: one write of 100 instance
// records scattered over a store of 50,000 (the records a placer pass and
// the links' events change between two commits), with the share of the
// background checkpoints they cause in cpu-ms/op.
func BenchmarkBatchCommit(b *testing.B) {
	const n, per = 50000, 100
	st, ch := filledStore(b, n)
	i := 0
	cpu := cpuTime(b)
	for b.Loop() {
		batch := &lan.Change{}
		for range per {
			in := ch.PutInstances[(i*7919)%n] // scattered
			in.Since = time.Now().UTC()
			batch.PutInstances = append(batch.PutInstances, in)
			i++
		}
		if err := st.Apply(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpuTime(b)-cpu)/1e6/float64(b.N), "cpu-ms/op")
}
