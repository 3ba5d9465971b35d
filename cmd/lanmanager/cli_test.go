package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/clitest"
	"berth/internal/freeports"
	"berth/lan"
	"berth/master"
)

// runCode runs the CLI as main does and returns stdout, stderr and the
// exit code.
func runCode(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runApp(t.Context(), append([]string{"lanmanager"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// closedAddr is a loopback address nothing listens on while the test runs.
func closedAddr(t *testing.T) string {
	t.Helper()
	return freeports.Refusing(t)
}

// TestExitCodes checks the documented table: 0 success, 1 an error while
// running, 2 a usage or validation error.
func TestExitCodes(t *testing.T) {
	srv := startLan(t)
	runFakeMaster(t, srv, "0123456789abcdef", "ma")
	mustRun(t, srv, "need", "add", "web", "--", "x")
	down := closedAddr(t)
	tests := []struct {
		args []string
		code int
		want string // in stdout or stderr
	}{
		{[]string{"need", "ls"}, 0, "web"},
		{[]string{"--help"}, 0, "USAGE"},
		{[]string{"--version"}, 0, "lanmanager version"},
		{[]string{"ned"}, 2, `unknown command "ned"; did you mean "need"?`},
		{[]string{"need", "shwo", "web"}, 2, `did you mean "show"?`},
		{[]string{"--nope", "need", "ls"}, 2, "unknown flag --nope"},
		{[]string{"need", "ls", "--jsn"}, 2, "unknown flag --jsn; did you mean --json?"},
		{[]string{"need", "add", "web2", "--instances", "-1", "--", "x"}, 2, "instances"},
		{[]string{"need", "add", "web2", "--restart-factor", "20", "--", "x"}, 2, "--restart-factor"},
		{[]string{"need", "add", "web2", "--instances", "abc", "--", "x"}, 2, `--instances "abc": want a whole number`},
		{[]string{"need", "add", "--instances", "abc", "web2", "--", "x"}, 2, `--instances "abc": want a whole number`},
		{[]string{"need", "add", "web2", "--instances", "2", "python3", "-m", "http.server"}, 2, "the command must follow --"},
		{[]string{"need", "add", "web2", "python3"}, 2, "the command must follow --"},
		{[]string{"need", "scale", "web", "-1"}, 2, "must be 0 or more"},
		{[]string{"need", "scale", "web", "two"}, 2, `"two" is not a whole number`},
		{[]string{"need", "show"}, 2, "want 1 argument"},
		{[]string{"need", "ls", "extra"}, 2, `need ls takes no arguments, got "extra"`},
		{[]string{"need", "show", "web", "--", "x"}, 2, "need show takes no command after --"},
		{[]string{"need", "show", "nope"}, 1, "nope"},
		{[]string{"need", "add", "web", "--", "x"}, 1, "exists"},
		{[]string{"need", "ls", "--addr", down}, 1, down},
		{[]string{"need", "show", "web", "--addr", down}, 1, down}, // client flags after the arguments count too
		{[]string{"logs", "web.0", "-f", "--addr", down}, 1, down},
		{[]string{"need", "ls", "--token", "wrong"}, 0, "web"}, // a lanmanager without a token takes any
		{[]string{"completion", "tcsh"}, 2, "unknown shell"},
		{[]string{"need", "add", "web2", "--memory", "lots", "--", "x"}, 2, `--memory: "lots": want a whole number`},
		{[]string{"need", "add", "web2", "--memory", "1.5G", "--", "x"}, 2, `--memory: "1.5G": unknown unit`},
		{[]string{"need", "add", "web2", "--memory", "0", "--", "x"}, 2, "--memory: must be at least 1M"},
		{[]string{"need", "add", "web2", "--memory", "512", "--", "x"}, 2, "--memory: must be between 1M and 1P"},
		{[]string{"need", "add", "web2", "--memory", "2P", "--", "x"}, 2, "--memory: must be between 1M and 1P"},
		{[]string{"need", "add", "web2", "--cpus", "half", "--", "x"}, 2, `--cpus "half": not a number`},
		{[]string{"need", "add", "web2", "--cpus", "0", "--", "x"}, 2, "--cpus: must be more than 0"},
		{[]string{"need", "add", "web2", "--cpus", "NaN", "--", "x"}, 2, "--cpus: must be between 0.01 and 8192"},
		{[]string{"need", "add", "web2", "--cpus", "10000", "--", "x"}, 2, "--cpus: must be between 0.01 and 8192"},
		{[]string{"need", "add", "web2", "--pids", "0", "--", "x"}, 2, "--pids: must be at least 1"},
		{[]string{"need", "add", "web2", "--pids", "9999999", "--", "x"}, 2, "--pids: must be between 1 and"},
	}
	for _, tt := range tests {
		out, errOut, code := runCode(t, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("lanmanager %s: exit %d, want %d; output %q, want it to contain %q", strings.Join(tt.args, " "), code, tt.code, out+errOut, tt.want)
		}
	}
}

// TestHelpInEveryPosition: --help and -h print the command's help and run
// nothing, before or after the positional arguments.
func TestHelpInEveryPosition(t *testing.T) {
	t.Setenv("BERTH_ADDR", closedAddr(t)) // running any command would fail
	t.Setenv("BERTH_TOKEN", "")
	for _, args := range [][]string{
		{"need", "show", "web", "--help"},
		{"need", "show", "--help", "web"},
		{"need", "show", "-h"},
		{"need", "add", "web", "--instances", "2", "-h", "--", "x"},
		{"need", "scale", "web", "3", "--help"},
		{"logs", "web.0", "-f", "--help"},
		{"master", "drain", "m1", "-h"},
		{"need", "--help"},
		{"help", "need"},
	} {
		out, errOut, code := runCode(t, args...)
		if code != 0 || !strings.Contains(out, "USAGE") {
			t.Errorf("lanmanager %s: exit %d, stdout %q, stderr %q; want the help and exit 0", strings.Join(args, " "), code, out, errOut)
		}
	}
	// After --, -h belongs to the command.
	if _, errOut, code := runCode(t, "need", "add", "web", "--", "ls", "-h"); code != 1 || !strings.Contains(errOut, "lanmanager at") {
		t.Errorf("need add web -- ls -h: exit %d %q; want it to run (and fail to reach the lanmanager)", code, errOut)
	}
}

// TestEveryAlias: a flag given by any of its names, before or after the
// positional arguments, sets the one value the command reads.
func TestEveryAlias(t *testing.T) {
	if n := clitest.EveryAlias(t, newApp); n < 1 {
		t.Fatalf("%d alias cases checked, want at least a flag with an alias", n)
	}
}

// TestNeedLimits: need add --memory --cpus --pids sets the need's limits,
// and need show prints them; a need without shows none.
func TestNeedLimits(t *testing.T) {
	srv := startLan(t)
	mustRun(t, srv, "need", "add", "capped", "--instances", "0", "--memory", "2048Ki", "--cpus", "0.25", "--pids", "50", "--", "x")
	mustRun(t, srv, "need", "add", "free", "--instances", "0", "--", "x")
	if out := mustRun(t, srv, "need", "show", "capped"); !strings.Contains(out, "limits:     memory 2M, cpus 0.25, pids 50 (per child)") {
		t.Errorf("need show capped:\n%s\nwant its limits", out)
	}
	if out := mustRun(t, srv, "need", "show", "capped", "--json"); !strings.Contains(out, `"limits": {`) || !strings.Contains(out, `"memory": "2M"`) {
		t.Errorf("need show capped --json:\n%s\nwant limits with memory \"2M\"", out)
	}
	if out := mustRun(t, srv, "need", "show", "free"); strings.Contains(out, "limits:") {
		t.Errorf("need show free:\n%s\nwant no limits line", out)
	}
}

// TestShowQuotesCommand: need show prints the command as a shell needs it.
func TestShowQuotesCommand(t *testing.T) {
	srv := startLan(t)
	mustRun(t, srv, "need", "add", "flaky", "--instances", "0", "--", "sh", "-c", "sleep 1; exit 3", "it's", "${PORT}", "")
	out := mustRun(t, srv, "need", "show", "flaky")
	want := `command:    sh -c 'sleep 1; exit 3' 'it'\''s' '${PORT}' ''`
	if !strings.Contains(out, want) {
		t.Errorf("need show:\n%s\nwant the line %q", out, want)
	}
	// What it prints, a shell turns back into the same words.
	line := strings.TrimPrefix(strings.Split(out[strings.Index(out, "command:"):], "\n")[0], "command:    ")
	b, err := exec.Command("sh", "-c", `eval "set -- $1"; for a in "$@"; do printf '[%s]' "$a"; done`, "sh", line).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "[sh][-c][sleep 1; exit 3][it's][${PORT}][]" {
		t.Errorf("the shell reads %q back as %s", line, got)
	}
	if ls := mustRun(t, srv, "need", "ls"); !strings.Contains(ls, `sh -c 'sleep 1; exit 3'`) {
		t.Errorf("need ls does not quote the command:\n%s", ls)
	}
}

// TestCompletion: the scripts for each shell, and the candidates the
// program offers them; bash completes for real.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, errOut, code := runCode(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "lanmanager") {
			t.Errorf("completion %s: exit %d %q %q", sh, code, out, errOut)
		}
	}
	// urfave/cli reads the words being completed from os.Args.
	args := []string{"lanmanager", "need", "--generate-bash-completion"}
	saved := os.Args
	os.Args = args
	t.Cleanup(func() { os.Args = saved })
	out, _, _ := runCode(t, args[1:]...)
	for _, want := range []string{"add", "ls", "show", "scale", "rm"} {
		if !strings.Contains(out, want) {
			t.Errorf("need --generate-bash-completion = %q, want %q among them", out, want)
		}
	}
}

// TestEventsFollows: `lanmanager events` prints the stream until Ctrl-C
// (its context ends), then exits 0.
func TestEventsFollows(t *testing.T) {
	srv := startLan(t)
	cl := &lan.Client{Addr: srv.Addr()}
	for _, asJSON := range []bool{false, true} {
		ctx, cancel := context.WithCancel(t.Context())
		var out lockedBuffer
		done := make(chan int, 1)
		args := []string{"lanmanager", "events"}
		if asJSON {
			args = append(args, "--json")
		}
		go func() { done <- runApp(ctx, args, &out, &out) }()
		// Declare needs until one shows up: the subscription is live.
		for i := 0; !strings.Contains(out.String(), "need.added"); i++ {
			if i > 200 {
				t.Fatalf("no need.added event printed; output %q", out.String())
			}
			// Through the client, not the CLI: two urfave/cli apps must not
			// run at once in one process (their flags are globals).
			zero := 0
			if _, err := cl.AddNeed(t.Context(), lan.NeedSpec{Name: fmt.Sprintf("ev%d-%v", i, asJSON), Command: []string{"x"}, Instances: &zero}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // pacing the declarations; the loop ends on the output, bounded by its count
		}
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("events exit %d after Ctrl-C, want 0; output %q", code, out.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("events did not stop")
		}
		if asJSON && !strings.Contains(out.String(), `"kind":"need.added"`) {
			t.Errorf("events --json printed %q", out.String())
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex // Protects following.
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWait: need add --wait returns once every instance runs; need scale
// --wait once the removed ones are gone; a --wait that runs out exits 1
// and says what is pending and why.
func TestWait(t *testing.T) {
	srv := startLan(t)
	runFakeMaster(t, srv, "0123456789abcdef", "ma")
	out, errOut, code := runCode(t, "need", "add", "web", "--instances", "3", "--protocols", "http", "--wait", "--", "x")
	if code != 0 || !strings.Contains(out, "web: 3/3 running") {
		t.Fatalf("need add --wait: exit %d, %q %q", code, out, errOut)
	}
	cl := &lan.Client{Addr: srv.Addr()}
	if st, err := cl.Need(t.Context(), "web"); err != nil || st.Running != 3 {
		t.Fatalf("after --wait: %+v %v, want 3 running", st, err)
	}
	out, errOut, code = runCode(t, "need", "scale", "web", "1", "--wait")
	if code != 0 || !strings.Contains(out, "web: 1/1 running") {
		t.Fatalf("need scale --wait: exit %d, %q %q", code, out, errOut)
	}
	if st, err := cl.Need(t.Context(), "web"); err != nil || len(st.InstanceList) != 1 {
		t.Fatalf("after scale --wait: %+v %v, want 1 instance left", st, err)
	}

	// Pinned to a master that does not exist: it stays pending.
	_, errOut, code = runCode(t, "need", "add", "stuck", "--machine", "nowhere", "--wait", "--timeout", "300ms", "--", "x")
	if code != 1 || !strings.Contains(errOut, "not settled after 300ms") || !strings.Contains(errOut, "stuck.0 pending") {
		t.Errorf("need add --wait that times out: exit %d, %q; want exit 1 listing stuck.0 pending", code, errOut)
	}
}

// TestMasterLsFits: master ls shows a short id and the version, within
// 120 columns.
func TestMasterLsFits(t *testing.T) {
	srv := startLan(t)
	runFakeMaster(t, srv, "0123456789abcdef", "a-rather-long-name")
	cl := &lan.Client{Addr: srv.Addr()}
	waitFor(t, "the master to connect", func() bool { ms, err := cl.Masters(t.Context()); return err == nil && len(ms) == 1 })
	out := mustRun(t, srv, "master", "ls")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(line) > 120 {
			t.Errorf("master ls line of %d columns:\n%s", len(line), line)
		}
	}
	if !strings.Contains(out, " 01234567\n") || strings.Contains(out, "0123456789abcdef") {
		t.Errorf("master ls does not show the 8-character id:\n%s", out)
	}
	if !strings.Contains(out, "VERSION") {
		t.Errorf("master ls has no VERSION column:\n%s", out)
	}
}

// TestServiceLsDropsBackoffFields: once an instance runs again after a
// failure, service ls --json no longer shows next_attempt and failed_on.
func TestServiceLsDropsBackoffFields(t *testing.T) {
	srv := startLan(t)
	fm := runFakeMaster(t, srv, "0123456789abcdef", "m1")
	fm.setFail(true)
	mustRun(t, srv, "need", "add", "web", "--protocols", "http", "--restart-delay", "50ms", "--", "x")
	cl := &lan.Client{Addr: srv.Addr()}
	waitFor(t, "web.0 to fail", func() bool {
		st, err := cl.Need(t.Context(), "web")
		return err == nil && st.InstanceList[0].Failures > 0 && st.InstanceList[0].FailedOn != ""
	})
	fm.setFail(false)
	waitFor(t, "web.0 running", func() bool { st, err := cl.Need(t.Context(), "web"); return err == nil && st.Running == 1 })
	out := mustRun(t, srv, "service", "ls", "--json")
	if strings.Contains(out, "next_attempt") || strings.Contains(out, "failed_on") || !strings.Contains(out, `"running"`) {
		t.Errorf("service ls --json of a running instance:\n%s\nwant no next_attempt nor failed_on", out)
	}
}

// TestDevHints: lanmanager dev prints next steps with the address it
// really listens on, and the master config it wrote into its state
// directory for master ps (never into the work tree).
func TestDevHints(t *testing.T) {
	t.Setenv("BERTH_TOKEN", "")
	wd, _ := os.Getwd()
	before, _ := os.ReadDir(wd)
	announce := t.TempDir()
	out, stop := startDev(t, "--listen", "127.0.0.1:0", "--ipc-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--announce-dir", announce)
	m := regexp.MustCompile(`lanmanager on http://(127\.0\.0\.1:\d+)`).FindStringSubmatch(out)
	if m == nil || strings.HasSuffix(m[1], ":0") {
		t.Fatalf("dev did not say where it listens:\n%s", out)
	}
	if !strings.Contains(out, "need add --addr "+m[1]+" hello") || !strings.Contains(out, "service ls --addr "+m[1]) {
		t.Errorf("the hints do not use the address dev listens on (%s):\n%s", m[1], out)
	}
	// dev needs its token too: a call without it is refused, and so is the
	// cross-origin text/plain POST a web page can send (issue 7's repro),
	// while the CLI finds the token by itself.
	if resp, err := http.Get("http://" + m[1] + "/v1/needs"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dev: GET /v1/needs without the token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+m[1]+"/v1/needs", strings.NewReader(`{"name":"pwn","command":["sh","-c","id"]}`))
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode < 400 {
		t.Errorf("dev: the cross-origin POST: %v %v, want it refused", resp, err)
	} else {
		resp.Body.Close()
	}
	var ls bytes.Buffer
	if code := runApp(t.Context(), []string{"lanmanager", "need", "ls", "--addr", m[1], "--announce-dir", announce}, &ls, io.Discard); code != 0 || strings.Contains(ls.String(), "pwn") {
		t.Errorf("need ls against dev without a token given: exit %d, %q (want 0 and no pwn)", code, ls.String())
	}
	conf := regexp.MustCompile(`master ps --config (\S+)`).FindStringSubmatch(out)
	if conf == nil {
		t.Fatalf("no master ps hint:\n%s", out)
	}
	if _, err := master.LoadConfig(conf[1]); err != nil {
		t.Errorf("the config dev points master ps at: %v", err)
	}
	stop()
	after, _ := os.ReadDir(wd)
	if len(after) != len(before) {
		t.Errorf("dev wrote into the working directory: %d entries before, %d after", len(before), len(after))
	}
}

// safeFlags are values that keep a command that takes no arguments off the
// default ports and out of the working directory, should it run.
func safeFlags(t *testing.T, cmd *cli.Command) []string {
	dir := t.TempDir()
	safe := map[string]string{
		"listen": "127.0.0.1:0", "ipc-listen": "off", "gateway-listen": "off",
		"data": dir, "announce-dir": dir, "addr": closedAddr(t),
	}
	var args []string
	for _, f := range cmd.Flags {
		if v, ok := safe[f.Names()[0]]; ok {
			args = append(args, "--"+f.Names()[0], v)
		}
	}
	return args
}

// TestStrayArgument: every command that takes no arguments refuses one by
// name, exit 2, and runs nothing. urfave/cli stops parsing flags at the
// first argument: `serve extra --listen nonsense` used to start a server on
// the default ports with its data in the working directory. Should the
// command run, the flags before the stray argument keep it on loopback
// port 0 in a temp dir, and the cancelled context stops it at once.
func TestStrayArgument(t *testing.T) {
	t.Setenv("BERTH_TOKEN", "")
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var walk func(path []string, cmds []*cli.Command)
	checked := 0
	walk = func(path []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			p := append(append([]string{}, path...), cmd.Name)
			walk(p, cmd.Subcommands)
			if cmd.Action == nil || cmd.ArgsUsage != "" || cmd.Name == "help" {
				continue
			}
			checked++
			args := append(append([]string{"lanmanager"}, p...), safeFlags(t, cmd)...)
			args = append(args, "extra", "--listen", "nonsense", "--addr", "nonsense")
			var out, errOut bytes.Buffer
			code := runApp(ctx, args, &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), `takes no arguments, got "extra"`) {
				t.Errorf("%s: exit %d, %q; want exit 2 naming the stray argument", strings.Join(args, " "), code, errOut.String())
			}
		}
	}
	walk(nil, newApp().Commands)
	if checked < 5 {
		t.Fatalf("only %d commands without arguments found", checked)
	}
	if entries, _ := os.ReadDir("."); len(entries) != 0 {
		t.Errorf("a refused command wrote into the working directory: %v", entries)
	}
}

// TestWaitFlagsCheckedFirst: a bad --timeout, or --timeout without --wait,
// is a usage error (exit 2) found before the need is added or scaled;
// `need add X --wait --timeout 0` used to add X and then exit 1.
func TestWaitFlagsCheckedFirst(t *testing.T) {
	srv := startLan(t)
	mustRun(t, srv, "need", "add", "web", "--instances", "0", "--", "x")
	t.Setenv("BERTH_ADDR", srv.Addr())
	t.Setenv("BERTH_TOKEN", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"need", "add", "x1", "--wait", "--timeout", "0", "--", "x"}, "--timeout 0s: must be positive"},
		{[]string{"need", "add", "--wait", "--timeout", "-1s", "x2", "--", "x"}, "--timeout -1s: must be positive"},
		{[]string{"need", "add", "x3", "--timeout", "5s", "--", "x"}, "--timeout: only with --wait"},
		{[]string{"need", "scale", "web", "2", "--wait", "--timeout", "0"}, "--timeout 0s: must be positive"},
		{[]string{"need", "scale", "web", "2", "--timeout", "5s"}, "--timeout: only with --wait"},
		{[]string{"master", "drain", "m1", "--timeout", "5s"}, "--timeout: only with --wait"},
		{[]string{"master", "drain", "m1", "--wait", "--timeout", "0"}, "--timeout 0s: must be positive"},
	} {
		_, errOut, code := runCode(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("lanmanager %s: exit %d, %q; want exit 2 and %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
	}
	cl := &lan.Client{Addr: srv.Addr()}
	list, err := cl.Needs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "web" || list[0].Instances != 0 {
		t.Errorf("after the refused calls: %+v; want web alone, 0 instances", list)
	}
}

// TestDevDefaultPortsTaken: on a machine where other programs hold the
// default ports (23552, 9163, 8000), dev takes free ones (and logs why), and
// the README's client commands, without --addr, reach it (the one
// lanmanager announced by this user, none on the default port).
func TestDevDefaultPortsTaken(t *testing.T) {
	t.Setenv("BERTH_TOKEN", "")
	t.Setenv("BERTH_ADDR", "")
	os.Unsetenv("BERTH_ADDR")
	for _, port := range []string{"23552", "9163", "8000"} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if errors.Is(err, syscall.EADDRINUSE) {
			continue // held by another program already: as wanted
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	announce := t.TempDir()
	out, stop := startDev(t, "--announce-dir", announce)
	for _, re := range []string{`lanmanager on http://127\.0\.0\.1:(\d+)`, `IPC hub on ws://127\.0\.0\.1:(\d+)`, `gateway on ws://127\.0\.0\.1:(\d+)`} {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil || m[1] == "23552" || m[1] == "9163" || m[1] == "8000" {
			t.Errorf("%s: %v, want a free port:\n%s", re, m, out)
		}
	}
	cctx, ccancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer ccancel()
	var ls bytes.Buffer
	if code := runApp(cctx, []string{"lanmanager", "master", "ls", "--announce-dir", announce}, &ls, io.Discard); code != 0 || !strings.Contains(ls.String(), "local") {
		t.Errorf("master ls without --addr: exit %d, %q; want dev's master", code, ls.String())
	}
	stop()
}

// startDev runs `lanmanager dev args...` in this process until it has
// printed its hints, and returns what it printed; stop is Ctrl-C, and
// checks that dev exits 0 within 20 s.
func startDev(t *testing.T, args ...string) (out string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- runApp(ctx, append([]string{"lanmanager", "dev"}, args...), io.Discard, &errOut)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errOut.String(), "master ps --config") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("dev printed no hints:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond) // polling dev's output, bounded by the deadline
	}
	return errOut.String(), func() {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("dev exited %d on Ctrl-C:\n%s", code, errOut.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("dev did not stop")
		}
	}
}

// TestAnnouncedAddr: a command without --addr goes to the one lanmanager
// of this user announced on this machine, unless one is on the default
// port or there are several.
func TestAnnouncedAddr(t *testing.T) {
	for _, tt := range []struct {
		listens []string
		want    string
	}{
		{nil, ""},
		{[]string{"127.0.0.1:40001"}, "http://127.0.0.1:40001"},
		{[]string{"0.0.0.0:40002"}, "http://127.0.0.1:40002"},
		{[]string{"127.0.0.1:40001", "127.0.0.1:23552"}, ""},
		{[]string{"127.0.0.1:40001", "127.0.0.1:40003"}, ""},
	} {
		dir := filepath.Join(t.TempDir(), "announce")
		for _, l := range tt.listens {
			if _, err := lan.Announce(dir, l, t.TempDir()); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := announcedAddr(dir)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("announced %v: %q %v, want %q", tt.listens, got, ok, tt.want)
		}
	}
}
