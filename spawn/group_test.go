package spawn

import (
	"bufio"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// groupWithSleeper starts a shell that leads its own group, with env, and
// forks a sleeper; it returns the leader, the sleeper and the leader's
// start time. Cleanup kills the group.
func groupWithSleeper(t *testing.T, env ...string) (leader, sleeper int, start uint64) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leader = cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-leader, syscall.SIGKILL); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if sleeper, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatal(err)
	}
	if start, err = ProcStartTime(leader); err != nil {
		t.Fatal(err)
	}
	return leader, sleeper, start
}

func pids(ms []member) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.pid)
	}
	return out
}

// TestGroupTrackerProof: the members of a group are found by its id only
// while its leader holds it (or for a group this program killed itself),
// and by their marks otherwise; a mark alone is not enough for a process
// that started before the leader, and nothing is found without proof.
func TestGroupTrackerProof(t *testing.T) {
	const mark = "SPAWN_MARK=proof-1"
	leader, sleeper, start := groupWithSleeper(t, "PATH=/usr/bin:/bin", mark)
	held := func(kill func()) bool { kill(); return true }
	notHeld := func(func()) bool { return false }

	tests := []struct {
		name string
		g    *groupTracker
		want []int
	}{
		{"held", &groupTracker{pgid: leader, since: start, held: held}, []int{leader, sleeper}},
		{"not held, no marks", &groupTracker{pgid: leader, since: start, held: notHeld}, nil},
		{"not held, marked", &groupTracker{pgid: leader, since: start, held: notHeld, marks: []string{mark}}, []int{leader, sleeper}},
		{"marks of another child", &groupTracker{pgid: leader, since: start, held: notHeld, marks: []string{"SPAWN_MARK=proof-2"}}, nil},
		{"only part of the marks", &groupTracker{pgid: leader, since: start, held: notHeld, marks: []string{mark, "SPAWN_OTHER=1"}}, nil},
		{"started before the record", &groupTracker{pgid: leader, since: start + 1<<20, held: notHeld, marks: []string{mark}}, nil},
		{"pgid 0", &groupTracker{pgid: 0, held: held, trusted: true}, nil},
		{"pgid 1", &groupTracker{pgid: 1, held: held, trusted: true}, nil},
	}
	for _, tt := range tests {
		got := pids(tt.g.members(false))
		slices.Sort(got)
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: members %v, want %v", tt.name, got, want)
		}
	}
	// Without proof nothing is signalled: the group lives on.
	g := groupTracker{pgid: leader, since: start, held: notHeld}
	if err := g.signal(syscall.SIGKILL); err == nil {
		t.Errorf("signal without proof: nil error, want os.ErrProcessDone")
	}
	if !alive(leader) || !alive(sleeper) {
		t.Fatalf("a process was signalled without proof")
	}
}

// TestFindLeaderAndEnvValues: the leader of a marked group is the marked
// process that leads its group, and EnvValues lists a mark's other keys.
func TestFindLeaderAndEnvValues(t *testing.T) {
	leader, _, start := groupWithSleeper(t, "SPAWN_MARK=find-1", "SPAWN_ALLOC=a-1")
	pid, st, ok := FindLeader(Tracking{Marks: []string{"SPAWN_MARK=find-1"}})
	if !ok || pid != leader || st != start {
		t.Errorf("FindLeader = %d, %d, %v; want %d, %d", pid, st, ok, leader, start)
	}
	if _, _, ok := FindLeader(Tracking{Marks: []string{"SPAWN_MARK=find-2"}}); ok {
		t.Errorf("FindLeader found a leader for marks nobody carries")
	}
	if _, _, ok := FindLeader(Tracking{}); ok {
		t.Errorf("FindLeader found a leader without marks")
	}
	if got := EnvValues([]string{"SPAWN_MARK=find-1"}, "SPAWN_ALLOC"); !slices.Equal(got, []string{"a-1"}) {
		t.Errorf("EnvValues = %q, want [a-1]", got)
	}
	if got := EnvValues(nil, "SPAWN_ALLOC"); got != nil {
		t.Errorf("EnvValues without marks = %q, want none", got)
	}
}

// BenchmarkGroupScan is the cost of one pass over /proc that the
// process-group path makes per poll while it waits for a child to be gone
// (with marks: every process's stat, and the environ of those not older
// than the leader).
func BenchmarkGroupScan(b *testing.B) {
	leader := os.Getpid()
	start, _ := ProcStartTime(leader)
	g := &groupTracker{pgid: leader, since: start, marks: []string{"SPAWN_MARK=bench"}, trusted: true}
	n := 0
	eachProc(func(int, procStat) { n++ })
	for b.Loop() {
		g.members(false)
	}
	b.ReportMetric(float64(n), "procs")
}
