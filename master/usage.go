package master

import (
	"time"

	"berth/pipes"
	"berth/spawn"
)

// usageWindow is how long ps measures each child's CPU use over.
const usageWindow = 250 * time.Millisecond

// childrenWithUsage is Children with each child's usage read from its
// cgroups: memory and pids now, and CPU over usageWindow. Without any
// child whose CPU time can be read it does not wait.
func (a *Agent) childrenWithUsage() []pipes.ChildInfo {
	a.mu.Lock()
	procs := make(map[string]*spawn.Child, len(a.children))
	for alloc, c := range a.children {
		c.mu.Lock()
		if c.proc != nil {
			procs[alloc] = c.proc
		}
		c.mu.Unlock()
	}
	a.mu.Unlock()
	first := make(map[string]spawn.Usage, len(procs))
	measured := false
	for alloc, p := range procs {
		u := p.Usage()
		first[alloc] = u
		measured = measured || u.CPUTime >= 0
	}
	began := time.Now()
	if measured {
		t := time.NewTimer(usageWindow)
		select {
		case <-t.C:
		case <-a.ctx.Done():
			t.Stop()
		}
	}
	window := time.Since(began)
	list := a.Children()
	for i := range list {
		p, ok := procs[list[i].Alloc]
		if !ok {
			continue
		}
		u0, u := first[list[i].Alloc], p.Usage()
		if u.Memory < 0 && u.PIDs < 0 && u.CPUTime < 0 {
			continue
		}
		pu := &pipes.Usage{Memory: u.Memory, PIDs: u.PIDs, CPUs: -1}
		if u0.CPUTime >= 0 && u.CPUTime >= 0 && window > 0 {
			pu.CPUs = float64(u.CPUTime-u0.CPUTime) / float64(window)
			pu.WindowMS = int(window / time.Millisecond)
		}
		list[i].Usage = pu
	}
	return list
}
