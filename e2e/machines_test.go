package e2e

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"berth/needs"
)

// Scenarios on the network-namespace lab: a lanmanager and three masters,
// each on its own host, running the real binaries. Every test prints its
// figures as FIGURE lines (see figure).

// labTTL is the --master-ttl of the lab's lanmanager: the default, stated
// on the command line so the figures say which TTL they were measured with.
const labTTL = 5 * time.Second

// labNeed declares need with n instances of hello (one http port each) and
// waits until they run and really match what the lanmanager says.
func labNeed(t *testing.T, c *labCluster, need string, n int) {
	t.Helper()
	c.lan.mustCLI(t, "need", "add", need, "--instances", fmt.Sprint(n), "--protocols", "http", "--json", "--", bin.hello)
	c.waitSettled(t, need, n, 90*time.Second)
}

// busiest returns the master running the most of run's instances (by
// name on a tie) and those instances' names.
func busiest(run map[string]*needs.Instance) (string, []string) {
	on := map[string][]string{}
	for name, s := range run {
		on[s.Master] = append(on[s.Master], name)
	}
	best := ""
	for m, list := range on {
		if best == "" || len(list) > len(on[best]) || len(list) == len(on[best]) && m < best {
			best = m
		}
	}
	sort.Strings(on[best])
	return best, on[best]
}

// movedOff reports whether every instance in names runs, on a master other
// than from, and the need has want running.
func movedOff(run map[string]*needs.Instance, names []string, from string, want int) bool {
	if len(run) != want {
		return false
	}
	for _, name := range names {
		if s := run[name]; s == nil || s.Master == from {
			return false
		}
	}
	return true
}

// TestNetnsMachineKill cuts the power of the busiest machine five times (its
// cable is pulled, then every process on it gets SIGKILL) and measures how
// long until all its instances run elsewhere. Between runs the machine
// comes back: cable in, master started again on its runtime directory, and
// the need settles with no stale child.
func TestNetnsMachineKill(t *testing.T) {
	c := newLabCluster(t, []string{"--master-ttl", labTTL.String()}, nil, "m1", "m2", "m3")
	const want = 6
	labNeed(t, c, "web", want)

	var runs []time.Duration
	var moved []int
	for i := range 5 {
		victim, names := busiest(c.lan.running(t, "web"))
		h := c.hostOf[victim]
		start := time.Now()
		c.lab.powerCut(h)
		waitFor(t, 60*time.Second, fmt.Sprintf("run %d: %v of %s to run elsewhere", i, names, victim), func() bool {
			return movedOff(c.lan.running(t, "web"), names, victim, want)
		})
		runs = append(runs, time.Since(start))
		moved = append(moved, len(names))
		t.Logf("run %d: %s lost %v; all running elsewhere after %s", i, victim, names, ms(runs[i]))

		c.lab.heal(h)
		c.master(victim).restart(t, c.lan)
		c.waitSettled(t, "web", want, 60*time.Second)
	}
	// The figures' resolution: one poll is one CLI call in the lanmanager's
	// namespace.
	var polls []time.Duration
	for range 5 {
		start := time.Now()
		c.lan.running(t, "web")
		polls = append(polls, time.Since(start))
	}
	figure(t, "machine-kill-replace", "ttl", labTTL, "kill", "link-down+sigkill-all", "instances_moved", fmt.Sprint(moved),
		"median", ms(median(runs)), "runs", durs(runs), "poll_cost", ms(median(polls)))
}

// partitionWatch polls the lanmanager and the real processes while a host
// is cut off, keeping the peaks and the first moment the victim's
// instances all ran elsewhere.
type partitionWatch struct {
	peakReported  int           // most running instances the lanmanager reported
	peakProcesses int           // most processes of the need that really ran
	replaced      time.Duration // since the partition; 0 while not yet
	allocChanges  []string      // instances whose allocation changed
	restarted     []string      // instances whose restart count grew
}

// watch polls until the deadline. before holds the instances at the start
// of the partition.
func (w *partitionWatch) watch(t *testing.T, c *labCluster, need string, before map[string]*needs.Instance, victim string, victims []string, start, until time.Time) {
	t.Helper()
	for time.Now().Before(until) {
		st := c.lan.need(t, need)
		run := 0
		current := map[string]*needs.Instance{}
		for _, in := range st.InstanceList {
			current[in.Name] = in
			if in.State == needs.Running {
				run++
			}
			b := before[in.Name]
			if b == nil {
				continue
			}
			if in.Alloc != b.Alloc && in.Alloc != "" && !slices.Contains(w.allocChanges, in.Name) {
				w.allocChanges = append(w.allocChanges, in.Name)
			}
			if in.Restarts > b.Restarts && !slices.Contains(w.restarted, in.Name) {
				w.restarted = append(w.restarted, in.Name)
			}
		}
		w.peakReported = max(w.peakReported, run)
		w.peakProcesses = max(w.peakProcesses, len(c.realRunning(need)))
		if w.replaced == 0 {
			done := run == st.Instances
			for _, name := range victims {
				if in := current[name]; in == nil || in.State != needs.Running || in.Master == victim {
					done = false
				}
			}
			if done {
				w.replaced = time.Since(start)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNetnsPartitionShort cuts a master off for less than the TTL: nothing
// may be placed again and nothing restarted; the same processes keep
// running with the same allocations.
func TestNetnsPartitionShort(t *testing.T) {
	c := newLabCluster(t, []string{"--master-ttl", labTTL.String()}, nil, "m1", "m2", "m3")
	const want = 6
	labNeed(t, c, "web", want)
	before := map[string]*needs.Instance{}
	for _, in := range c.lan.need(t, "web").InstanceList {
		before[in.Name] = in
	}
	victim, names := busiest(c.lan.running(t, "web"))
	h := c.hostOf[victim]

	// The link stays silent longer than the cut: frames lost during it
	// come back with TCP's next retransmission (200 ms doubling, so up to
	// about 1.6 s after a 2 s cut), and the last heartbeat before it may
	// be a ping interval (TTL/5) old. 2 s keeps all that under the TTL.
	const cut = labTTL * 2 / 5
	var w partitionWatch
	start := time.Now()
	c.lab.partition(h)
	w.watch(t, c, "web", before, victim, names, start, start.Add(cut))
	c.lab.heal(h)
	// Keep watching until well past the moment a TTL counted from the cut
	// would have fired, then for the reconnect that a master that gave up
	// would make.
	w.watch(t, c, "web", before, victim, names, start, start.Add(2*labTTL))

	if len(w.allocChanges) != 0 || len(w.restarted) != 0 {
		t.Errorf("a %s partition (TTL %s) placed %v again and restarted %v; want none", cut, labTTL, w.allocChanges, w.restarted)
	}
	c.waitSettled(t, "web", want, 30*time.Second)
	after := c.lan.running(t, "web")
	for name, b := range before {
		if a := after[name]; a == nil || a.PID != b.PID || a.Alloc != b.Alloc {
			t.Errorf("%s: before the partition pid %d alloc %s, after %+v", name, b.PID, b.Alloc, a)
		}
	}
	figure(t, "partition-short", "ttl", labTTL, "partition", cut, "victim_instances", len(names),
		"replacements", len(w.allocChanges), "restarts", len(w.restarted), "peak_reported", w.peakReported,
		"peak_processes", w.peakProcesses, "desired", want)
}

// TestNetnsPartitionLong cuts a master off for three TTLs, then heals it.
// Its instances must run elsewhere during the partition; once healed, the
// returning master must stop its replaced children, leaving exactly the
// desired number running, each the one the lanmanager names. The master
// keeps its children while cut off (stopafterdisconnect unset), so for a
// while more processes run than asked for: the figure says how many.
func TestNetnsPartitionLong(t *testing.T) { partitionLong(t, "partition-long", "") }

// TestNetnsPartitionStopAfterDisconnect is the same partition with
// stopafterdisconnect set to the TTL: the cut-off master stops its own
// children once it has not reached the lanmanager for that long, so the
// extra processes are gone before the partition heals.
func TestNetnsPartitionStopAfterDisconnect(t *testing.T) {
	partitionLong(t, "partition-stop-after-disconnect", labTTL.String())
}

func partitionLong(t *testing.T, fig, stopAfter string) {
	var extra map[string]any
	if stopAfter != "" {
		extra = map[string]any{"stopafterdisconnect": stopAfter}
	}
	c := newLabCluster(t, []string{"--master-ttl", labTTL.String()}, extra, "m1", "m2", "m3")
	const want = 6
	labNeed(t, c, "web", want)
	before := map[string]*needs.Instance{}
	for _, in := range c.lan.need(t, "web").InstanceList {
		before[in.Name] = in
	}
	victim, names := busiest(c.lan.running(t, "web"))
	h := c.hostOf[victim]
	orphans := leaders(c.master(victim).marker)

	const cut = 3 * labTTL
	var w partitionWatch
	start := time.Now()
	c.lab.partition(h)
	w.watch(t, c, "web", before, victim, names, start, start.Add(cut))
	if w.replaced == 0 {
		// Not a speed limit: the partition is over before anything moved,
		// so the scenario did not happen. Wait (bounded) to say how late.
		w.watch(t, c, "web", before, victim, names, start, start.Add(cut+30*time.Second))
		t.Errorf("the instances of %s (%v) were not running elsewhere within the %s partition (TTL %s); replaced after %s (0 = never)",
			victim, names, cut, labTTL, ms(w.replaced))
	}
	orphansAtHeal := 0
	for pid := range orphans {
		if alive(pid) {
			orphansAtHeal++
		}
	}
	processesAtHeal := len(c.realRunning("web"))
	c.lab.heal(h)
	settle := c.waitSettled(t, "web", want, 60*time.Second)

	if stopAfter != "" && orphansAtHeal != 0 {
		t.Errorf("with stopafterdisconnect %s, %d of %s's %d children still ran after a %s partition", stopAfter, orphansAtHeal, victim, len(orphans), cut)
	}
	// The healed master ran the orphans; none is left, and it lists only
	// what the lanmanager places there.
	for pid := range orphans {
		if alive(pid) {
			t.Errorf("orphan pid %d on %s survived the heal", pid, victim)
		}
	}
	run := c.lan.running(t, "web")
	m := c.master(victim)
	for _, ch := range m.ps(t) {
		if s := run[ch.Instance]; s == nil || s.Alloc != ch.Alloc || s.Master != victim {
			t.Errorf("%s still lists %s (alloc %s) that the lanmanager runs as %+v", victim, ch.Instance, ch.Alloc, s)
		}
	}
	if w.peakReported > want {
		t.Errorf("the lanmanager reported %d running instances of %d during the partition", w.peakReported, want)
	}
	kv := []any{"ttl", labTTL, "partition", cut, "victim_instances", len(names),
		"replace", ms(w.replaced), "peak_reported", w.peakReported, "peak_processes", w.peakProcesses,
		"processes_at_heal", processesAtHeal, "desired", want, "running_after", len(run), "settle", ms(settle)}
	if stopAfter != "" {
		kv = append([]any{"stopafterdisconnect", stopAfter}, kv...)
	}
	figure(t, fig, kv...)
}
