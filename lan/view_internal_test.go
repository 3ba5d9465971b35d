package lan

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"berth/needs"
)

// TestViewCountsKept: the counts a list shows, kept as records come and
// go, are at every step what counting every instance gives (the way a
// show counts), through 20,000 random writes and deletions of instances
// in every state, removing or not, with and without a reason, and needs
// whose instances are all gone.
func TestViewCountsKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ns := map[string]*needs.Need{}
	for i := range 4 {
		name := fmt.Sprintf("n%d", i)
		ns[name] = &needs.Need{Name: name, Instances: 8}
	}
	v := newView(ns, nil)
	states := []needs.State{needs.Pending, needs.Starting, needs.Running, needs.Stopping, needs.Backoff}
	reasons := []string{"", "", "no master has the ports", "exited with status 1"}
	for step := range 20000 {
		need := fmt.Sprintf("n%d", rng.IntN(4))
		idx := rng.IntN(8)
		name := needs.InstanceName(need, idx)
		if rng.IntN(4) == 0 {
			v.written(map[string]*needs.Instance{name: nil})
		} else {
			in := &needs.Instance{Need: need, Index: idx, Name: name, State: states[rng.IntN(len(states))],
				Removing: rng.IntN(5) == 0, Reason: reasons[rng.IntN(len(reasons))]}
			v.written(map[string]*needs.Instance{name: in})
		}
		got := v.list()
		v.mu.RLock()
		for _, st := range got {
			want := v.status(v.needs[st.Name], false)
			if st.Running != want.Running || st.Pending != want.Pending || !reflect.DeepEqual(st.Reasons, want.Reasons) {
				v.mu.RUnlock()
				t.Fatalf("step %d, need %s: list shows running %d, pending %d, reasons %q; counting its instances gives %d, %d, %q",
					step, st.Name, st.Running, st.Pending, st.Reasons, want.Running, want.Pending, want.Reasons)
			}
		}
		v.mu.RUnlock()
	}
}
