package e2e

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/needs"
)

// TestVersionReported: both binaries print a version (the VCS revision the
// go command recorded, when no link-time version is set; never the
// pseudo-version Go 1.24+ records for a checkout), and a master reports the
// same to the lanmanager.
func TestVersionReported(t *testing.T) {
	var versions []string
	for _, b := range []string{bin.lanmanager, bin.master} {
		out, err := exec.Command(b, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v %s", b, err, out)
		}
		fields := strings.Fields(string(out))
		if len(fields) != 3 || fields[1] != "version" || !regexp.MustCompile(`^([0-9a-f]{12}(-dirty)?|v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?(\+dirty)?|devel)$`).MatchString(fields[2]) {
			t.Fatalf("%s --version = %q, want \"<name> version <revision>\"", b, out)
		}
		versions = append(versions, fields[2])
	}
	if versions[0] != versions[1] {
		t.Errorf("lanmanager %s, master %s: built from one tree, they should agree", versions[0], versions[1])
	}
	l := startLan(t, "")
	startMaster(t, l, "m1", 5)
	var ms []*needs.Master
	if err := json.Unmarshal([]byte(l.mustCLI(t, "master", "ls", "--json")), &ms); err != nil || len(ms) != 1 {
		t.Fatalf("master ls --json: %v %v", ms, err)
	}
	if ms[0].Version != versions[1] {
		t.Errorf("the master reported version %q, want %q", ms[0].Version, versions[1])
	}
	if out := l.mustCLI(t, "master", "ls"); !strings.Contains(out, versions[1]) {
		t.Errorf("master ls does not show the version:\n%s", out)
	}
}

// TestBashCompletion sources `lanmanager completion bash` in a real bash
// and completes as the shell would on Tab.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	for _, tt := range []struct {
		words []string
		want  []string
	}{
		{[]string{bin.lanmanager, "ne"}, []string{"need"}},
		{[]string{bin.lanmanager, "need", ""}, []string{"add", "ls", "show", "scale", "restart", "rm"}},
		{[]string{bin.lanmanager, "need", "add", "--ins"}, []string{"--instances"}},
		{[]string{bin.master, "r"}, []string{"run"}},
	} {
		prog := tt.words[0]
		name := prog[strings.LastIndex(prog, "/")+1:]
		words := make([]string, len(tt.words))
		for i, w := range tt.words {
			words[i] = "'" + w + "'"
		}
		script := `source <("` + prog + `" completion bash)
COMP_WORDS=(` + strings.Join(words, " ") + `)
COMP_CWORD=` + strconv.Itoa(len(tt.words)-1) + `
_` + name + `_complete
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.CommandContext(t.Context(), "bash", "-c", script)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("bash completion hung")
		}
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range tt.want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				t.Errorf("completing %q: got %q, want %q among them", tt.words[1:], got, w)
			}
		}
	}
}
