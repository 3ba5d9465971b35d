package spawn

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestGroupMembers starts a shell that leads its own group and forks a
// sleeper, then checks the group is found with and without its leader, and
// that a wrong leader start time finds nothing.
func TestGroupMembers(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leader := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-leader, syscall.SIGKILL); cmd.Wait() })
	var buf [32]byte
	n, err := out.Read(buf[:])
	if err != nil {
		t.Fatal(err)
	}
	var sleeper int
	for _, c := range buf[:n] {
		if c >= '0' && c <= '9' {
			sleeper = sleeper*10 + int(c-'0')
		}
	}
	start, err := ProcStartTime(leader)
	if err != nil {
		t.Fatal(err)
	}

	got := GroupMembers(leader, start)
	if !slices.Contains(got, leader) || !slices.Contains(got, sleeper) {
		t.Fatalf("GroupMembers = %v, want leader %d and sleeper %d", got, leader, sleeper)
	}
	if got := GroupMembers(leader, start+1); len(got) != 0 {
		t.Errorf("with a wrong leader start time: %v, want none (pid reused)", got)
	}

	// Kill only the leader: the sleeper is still found through its group.
	syscall.Kill(leader, syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = GroupMembers(leader, start)
		if !slices.Contains(got, leader) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if slices.Contains(got, leader) || !slices.Contains(got, sleeper) {
		t.Errorf("after the leader died: %v, want only the sleeper %d", got, sleeper)
	}
	syscall.Kill(-leader, syscall.SIGKILL)
	deadline = time.Now().Add(5 * time.Second)
	for len(GroupMembers(leader, start)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := GroupMembers(leader, start); len(got) != 0 {
		t.Errorf("after killing the group: %v, want none", got)
	}
}
