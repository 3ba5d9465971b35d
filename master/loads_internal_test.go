package master

import (
	"testing"
	"time"

	"berth/pipes"
)

// TestRemoteLoadsTake: figures from other masters are dated by their age
// on this master's clock; an older sample never replaces a newer one (a
// frame of an earlier link, or a stale one); figures more than a minute
// old are dropped, at once or when a later frame comes.
func TestRemoteLoadsTake(t *testing.T) {
	var r remoteLoads
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	r.take(&pipes.Loads{Loads: []pipes.Load{
		{Instance: "web.0", Alloc: "aaaaaaaa01", CPUPercent: 80, HeapUsed: 1, HeapTotal: 2, AgeMS: 1500},
		{Instance: "web.1", Alloc: "aaaaaaaa02", CPUPercent: 5, AgeMS: int64(2 * remoteKeep / time.Millisecond)},
	}}, now)
	st, ok := r.get("aaaaaaaa01")
	if !ok || st.CPUPercent != 80 || st.HeapUsed != 1 || st.HeapTotal != 2 || !st.At.Equal(now.Add(-1500*time.Millisecond)) {
		t.Fatalf("web.0 = %+v, %v; want 80%% sampled 1.5 s before now", st, ok)
	}
	if _, ok := r.get("aaaaaaaa02"); ok {
		t.Error("figures two minutes old were kept")
	}
	// An older sample of web.0 arrives after the newer one: ignored.
	r.take(&pipes.Loads{Loads: []pipes.Load{{Instance: "web.0", Alloc: "aaaaaaaa01", CPUPercent: 1, AgeMS: 3000}}}, now)
	if st, _ := r.get("aaaaaaaa01"); st.CPUPercent != 80 {
		t.Errorf("an older sample replaced the newer: %+v", st)
	}
	// A newer one replaces it.
	r.take(&pipes.Loads{Loads: []pipes.Load{{Instance: "web.0", Alloc: "aaaaaaaa01", CPUPercent: 20, AgeMS: 0}}}, now.Add(time.Second))
	if st, _ := r.get("aaaaaaaa01"); st.CPUPercent != 20 {
		t.Errorf("a newer sample did not replace the older: %+v", st)
	}
	// Two minutes on, the next frame drops what it does not refresh.
	r.take(&pipes.Loads{Loads: []pipes.Load{{Instance: "web.2", Alloc: "aaaaaaaa03", CPUPercent: 7}}}, now.Add(2*remoteKeep))
	if _, ok := r.get("aaaaaaaa01"); ok {
		t.Error("web.0's figures outlived remoteKeep")
	}
	if st, ok := r.get("aaaaaaaa03"); !ok || st.CPUPercent != 7 {
		t.Errorf("web.2 = %+v, %v; want 7%%", st, ok)
	}
}
