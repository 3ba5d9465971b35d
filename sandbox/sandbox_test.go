package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/freeports"
	"berth/internal/mustrun"
	"berth/spawn"
)

// TestWritesOnlyInsideBinds: the root is read-only, a host directory under
// /tmp that is not bound is not even there, the sandbox's /tmp is its own,
// and a bind= directory is writable and shared with the host.
func TestWritesOnlyInsideBinds(t *testing.T) {
	requireSandbox(t)
	data := t.TempDir()    // bound read-write
	unbound := t.TempDir() // under the host's /tmp, not bound
	etc := "/etc/berth-sandbox-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	private := "/tmp/berth-sandbox-private-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	opts, err := ParseOptions([]string{"bind=" + data})
	if err != nil {
		t.Fatal(err)
	}

	spec := helperSpec(t, "write", etc, filepath.Join(unbound, "x"), "/usr/berth-sandbox-x")
	c := startChild(t, spec, opts)
	ex, log := waitExit(t, c, spec.LogPath)
	if ex.Code != 1 {
		t.Fatalf("writes outside the binds: %v, want exit code 1; log:\n%s", ex, log)
	}
	for _, want := range []string{"write " + etc + ": open " + etc + ": read-only file system",
		"write " + filepath.Join(unbound, "x") + ": open " + filepath.Join(unbound, "x") + ": no such file or directory",
		"write /usr/berth-sandbox-x: open /usr/berth-sandbox-x: read-only file system"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for _, p := range []string{etc, filepath.Join(unbound, "x"), "/usr/berth-sandbox-x"} {
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("%s exists on the host", p)
		}
	}

	spec = helperSpec(t, "write", filepath.Join(data, "ok"), private)
	c = startChild(t, spec, opts)
	if ex, log := waitExit(t, c, spec.LogPath); ex.Code != 0 {
		t.Fatalf("writes inside the bind and /tmp: %v; log:\n%s", ex, log)
	}
	if b, err := os.ReadFile(filepath.Join(data, "ok")); err != nil || string(b) != "from the sandbox\n" {
		t.Errorf("the bound file on the host: %q, %v", b, err)
	}
	if _, err := os.Stat(private); err == nil {
		os.Remove(private)
		t.Errorf("%s, written to the sandbox's own /tmp, is on the host", private)
	}
}

// TestRootCannotRemount: a child of a root master runs as root, but
// without capabilities: it cannot remount the root read-write, which
// bwrap alone allows (checked: without --cap-drop ALL the child wrote to
// the host's /etc).
func TestRootCannotRemount(t *testing.T) {
	requireSandbox(t)
	if os.Geteuid() != 0 {
		t.Skip("a child of a non-root master has no capabilities anyway")
	}
	target := "/etc/berth-sandbox-remount-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	spec := helperSpec(t, "")
	spec.Command = []string{"/bin/sh", "-c", `grep CapEff /proc/self/status; mount -o remount,rw,bind / && touch "$1"; echo "rc=$?"`, "sh", target}
	c := startChild(t, spec, Options{})
	_, log := waitExit(t, c, spec.LogPath)
	if _, err := os.Stat(target); err == nil {
		os.Remove(target)
		t.Fatalf("the sandboxed root remounted / and wrote %s; log:\n%s", target, log)
	}
	if !strings.Contains(log, "CapEff:\t0000000000000000") || strings.Contains(log, "rc=0") {
		t.Errorf("want no capabilities and a failed remount; log:\n%s", log)
	}
}

// TestSeesOnlyItsOwnProcesses: /proc shows bwrap's init (pid 1) and the
// child (pid 2), nothing of the host.
func TestSeesOnlyItsOwnProcesses(t *testing.T) {
	requireSandbox(t)
	spec := helperSpec(t, "ps")
	c := startChild(t, spec, Options{})
	ex, log := waitExit(t, c, spec.LogPath)
	if ex.Code != 0 || strings.TrimSpace(log) != "self=2 pids=[1 2]" {
		t.Fatalf("%v; log:\n%s\nwant self=2 pids=[1 2]", ex, log)
	}
}

// TestServesOnTheHostNetwork: a port the child listens on is reachable
// from the host on loopback, and Stop's SIGTERM reaches the child's
// handler (exit code 0 is the child's own, through bwrap).
func TestServesOnTheHostNetwork(t *testing.T) {
	requireSandbox(t)
	port := freeports.Port(t)
	spec := helperSpec(t, "serve")
	spec.Env = append(spec.Env, "PORT="+strconv.Itoa(port))
	c := startChild(t, spec, Options{})
	waitLog(t, spec.LogPath, "ready")
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the sandboxed child: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if line != "hello from the sandbox\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	ex := c.Stop(t.Context(), 10*time.Second)
	if ex.Code != 0 || ex.Signal != "" {
		t.Fatalf("stopped: %v, want exit code 0 (the child's own after SIGTERM); log:\n%s", ex, readLog(spec.LogPath))
	}
	if !strings.Contains(readLog(spec.LogPath), "got SIGTERM") {
		t.Errorf("the child never saw SIGTERM; log:\n%s", readLog(spec.LogPath))
	}
}

// TestSIGTERMWithoutHandler: a child that does not handle SIGTERM dies of
// it well within the grace period, not of the SIGKILL after it; bwrap
// reports that as exit code 128+15. With marks (as a master tracks) the
// command has a session of its own and is reached through its marks;
// without, it stays in bwrap's session and process group and is reached
// through the group.
func TestSIGTERMWithoutHandler(t *testing.T) {
	requireSandbox(t)
	for _, marks := range []bool{true, false} {
		t.Run(fmt.Sprintf("marks=%v", marks), func(t *testing.T) {
			spec := helperSpec(t, "block")
			mark := spec.Tracking.Marks[0]
			if !marks {
				spec.Tracking = spawn.Tracking{}
			}
			c := startChild(t, spec, Options{})
			waitLog(t, spec.LogPath, "ready")
			leader, err := procStat(c.PID())
			if err != nil {
				t.Fatal(err)
			}
			cmd := commandOf(t, mark)
			if marks != (cmd.session != leader.session) || marks != (cmd.pgrp != c.PID()) {
				t.Errorf("command %+v, bwrap %+v (pid %d): want a session and group of its own %v", cmd, leader, c.PID(), marks)
			}
			if err := c.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			case <-time.After(20 * time.Second):
				t.Fatal("SIGTERM did not end the sandboxed child in 20s")
			}
			if ex := c.Exit(); ex.Code != 128+int(syscall.SIGTERM) {
				t.Fatalf("exit %v, want exit code %d (bwrap's report of SIGTERM)", ex, 128+int(syscall.SIGTERM))
			}
		})
	}
}

// stat is what the tests read of /proc/<pid>/stat.
type stat struct {
	pid, pgrp, session int
	comm               string
}

func procStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[end+1:]) // state ppid pgrp session ...
	st := stat{pid: pid, comm: s[open+1 : end]}
	st.pgrp, _ = strconv.Atoi(f[2])
	st.session, _ = strconv.Atoi(f[3])
	return st, nil
}

// commandOf finds, from the host, the sandboxed test binary carrying mark.
func commandOf(t *testing.T, mark string) stat {
	t.Helper()
	exe, _ := os.Executable()
	ents, _ := os.ReadDir("/proc")
	var found []stat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), mark) {
			continue
		}
		if st, err := procStat(pid); err == nil && st.comm == filepath.Base(exe)[:min(15, len(filepath.Base(exe)))] {
			found = append(found, st)
		}
	}
	if len(found) != 1 {
		t.Fatalf("processes of the test binary with %s: %+v, want 1", mark, found)
	}
	return found[0]
}

// TestReachesItsPipe: the child's control socket lives in the master's
// runtime directory, here under the host's /tmp that the sandbox hides;
// its directory is bound read-only and the child talks to it.
func TestReachesItsPipe(t *testing.T) {
	requireSandbox(t)
	runtime, err := os.MkdirTemp("", "bs") // short: a socket path must stay under 104 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runtime) })
	sock := filepath.Join(runtime, "sock", "a.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() { // ends when ln is closed or after one exchange
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintln(c, "pong")
		got <- line
	}()
	spec := helperSpec(t, "dial")
	spec.Env = append(spec.Env, "BERTH_PIPE="+sock)
	c := startChild(t, spec, Options{})
	ex, log := waitExit(t, c, spec.LogPath)
	if ex.Code != 0 || !strings.Contains(log, `answer="pong\n" err=<nil>`) {
		t.Fatalf("%v; log:\n%s", ex, log)
	}
	if line := <-got; line != "ping\n" {
		t.Fatalf("the master side read %q", line)
	}
}

// TestChildContract: the environment is exactly Spec.Env, the working
// directory is Spec.Dir, fd 3 is Spec.ExtraFiles[0], and with ListenPID,
// LISTEN_PID is the child's pid inside the sandbox. bwrap sets PWD itself;
// the child must see Spec.Env's, or none.
func TestChildContract(t *testing.T) {
	requireSandbox(t)
	for _, tt := range []struct {
		listen bool
		pwd    string
	}{{false, ""}, {true, ""}, {false, "/given"}, {true, "/given"}} {
		t.Run(fmt.Sprintf("ListenPID=%v,PWD=%q", tt.listen, tt.pwd), func(t *testing.T) {
			listen := tt.listen
			spec := helperSpec(t, "env")
			spec.ListenPID = listen
			if tt.pwd != "" {
				spec.Env = append(spec.Env, "PWD="+tt.pwd)
			}
			fd3 := filepath.Join(t.TempDir(), "fd3")
			f, err := os.Create(fd3)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			spec.ExtraFiles = []*os.File{f}
			c := startChild(t, spec, Options{})
			ex, log := waitExit(t, c, spec.LogPath)
			if ex.Code != 0 {
				t.Fatalf("%v; log:\n%s", ex, log)
			}
			var env []string
			var dir, pid string
			for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
				switch {
				case strings.HasPrefix(l, "env="):
					env = append(env, strings.TrimPrefix(l, "env="))
				case strings.HasPrefix(l, "dir="):
					dir = strings.TrimPrefix(l, "dir=")
				case strings.HasPrefix(l, "pid="):
					pid = strings.TrimPrefix(l, "pid=")
				}
			}
			want := slices.Clone(spec.Env)
			if listen {
				want = append(want, "LISTEN_PID="+pid)
			}
			slices.Sort(env)
			slices.Sort(want)
			if !slices.Equal(env, want) {
				t.Errorf("environment\n got %q\nwant %q", env, want)
			}
			if dir != spec.Dir {
				t.Errorf("dir %q, want %q", dir, spec.Dir)
			}
			if b, err := os.ReadFile(fd3); string(b) != "fd3\n" {
				t.Errorf("fd 3 got %q, %v", b, err)
			}
		})
	}
}

// TestStartErrors: a command that does not exist, one whose path env
// would take for a variable, a bind that does not exist: a
// *spawn.StartError naming the need's command, before anything runs.
func TestStartErrors(t *testing.T) {
	requireSandbox(t)
	spec := helperSpec(t, "env")
	spec.Command = []string{"berth-no-such-command"}
	_, err := spawn.Start(t.Context(), Driver{}, spec)
	if se, ok := errorsAs[*spawn.StartError](err); !ok || se.Command != "berth-no-such-command" || !errorsIs(err, exec.ErrNotFound) {
		t.Errorf("missing command: %v", err)
	}
	spec = helperSpec(t, "env")
	eq := filepath.Join(spec.Dir, "a=b")
	if err := os.WriteFile(eq, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec.Command = []string{eq}
	if _, err = spawn.Start(t.Context(), Driver{}, spec); err == nil || !strings.Contains(err.Error(), "a path with '=' cannot run in the sandbox") {
		t.Errorf("a command path with '=': %v", err)
	}
	spec = helperSpec(t, "env")
	_, err = spawn.Start(t.Context(), Driver{Options: Options{Bind: []string{"/berth-no-such-dir"}}}, spec)
	if oe, ok := errorsAs[*OptionError](err); !ok || oe.Option != "bind=/berth-no-such-dir" || !errorsIs(err, syscall.ENOENT) {
		t.Errorf("missing bind: %v", err)
	}
}

// TestUnprivileged: an unprivileged user (nobody) gets the same sandbox
// through user namespaces, where the kernel allows them.
func TestUnprivileged(t *testing.T) {
	requireSandbox(t)
	if os.Geteuid() != 0 {
		mustrun.Skip(t, mustrun.Root, "needs root to switch to nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	spec, err := new(Sandbox).Wrap(spawn.Spec{
		Command: []string{"/bin/sh", "-c", `id -u; echo /proc/[0-9]*; touch /etc/berth-x 2>&1`},
		Env:     []string{"PATH=/usr/bin:/bin"}, Dir: "/",
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, spec.Command...)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, args...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "namespace") {
		t.Skipf("user namespaces are off for unprivileged users here: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err == nil || len(lines) != 3 || lines[0] != "65534" || lines[1] != "/proc/1 /proc/2" || !strings.Contains(lines[2], "Read-only file system") {
		t.Fatalf("as nobody: %v; output:\n%s\nwant uid 65534, 2 processes, a read-only /etc and a failure", err, out)
	}
}

// TestBindThroughSymlink: a bind= path that is a symbolic link (a data
// directory linked elsewhere) binds what it leads to, and the child
// writes through the link. bwrap alone refuses such a bind ("Can't bind
// mount ...: No such file or directory").
func TestBindThroughSymlink(t *testing.T) {
	requireSandbox(t)
	real := t.TempDir()                                      // under the host's /tmp: hidden unless bound
	links, err := os.MkdirTemp("/var/tmp", "berth-sandbox-") // visible in the read-only root
	if err != nil {
		t.Skipf("no writable /var/tmp for the link: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(links) })
	link := filepath.Join(links, "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	opts, err := ParseOptions([]string{"bind=" + link})
	if err != nil {
		t.Fatal(err)
	}
	spec := helperSpec(t, "write", filepath.Join(link, "f"))
	c := startChild(t, spec, opts)
	if ex, log := waitExit(t, c, spec.LogPath); ex.Code != 0 {
		t.Fatalf("write through the link: %v; log:\n%s", ex, log)
	}
	if b, err := os.ReadFile(filepath.Join(real, "f")); err != nil || string(b) != "from the sandbox\n" {
		t.Errorf("the file behind the link: %q, %v", b, err)
	}
}

// TestNothingLeftBehind: a command that leaves a process running in the
// background and exits: once Done is closed, nothing carrying the child's
// mark runs (the background process had a session of the command's, not
// bwrap's process group, and died with the sandbox's pid namespace or by
// its mark).
func TestNothingLeftBehind(t *testing.T) {
	requireSandbox(t)
	spec := helperSpec(t, "")
	mark := spec.Tracking.Marks[0]
	spec.Command = []string{"/bin/sh", "-c", "sleep 1000 & echo started; exit 0"}
	c := startChild(t, spec, Options{})
	ex, log := waitExit(t, c, spec.LogPath)
	if ex.Code != 0 || !strings.Contains(log, "started") {
		t.Fatalf("%v; log:\n%s", ex, log)
	}
	if left := marked(mark); len(left) > 0 {
		t.Fatalf("processes with %s still running after Done: %v", mark, left)
	}
}

// marked lists the pids of live processes whose environment has mark.
func marked(mark string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), mark) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
			out = append(out, pid)
		}
	}
	return out
}

// TestPipeAloneInItsDirectory: a master's socket directory holds
// master.sock and each child's pipe in a directory of its own; the sandbox
// hides the socket directory and binds back only the child's own pipe
// directory, so the child reaches its pipe and neither master.sock nor a
// sibling's pipe. The socket directory is outside /tmp (whose tmpfs would
// hide it anyway), in the read-only root.
func TestPipeAloneInItsDirectory(t *testing.T) {
	requireSandbox(t)
	runtime, err := os.MkdirTemp("/var/tmp", "bs")
	if err != nil {
		t.Skipf("no writable /var/tmp for the socket directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(runtime) })
	sockDir := filepath.Join(runtime, "sock")
	master := filepath.Join(sockDir, "master.sock")
	own := filepath.Join(sockDir, "0123456789abcdef", "pipe")
	sibling := filepath.Join(sockDir, "fedcba9876543210", "pipe")
	for _, p := range []string{master, own, sibling} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	spec := helperSpec(t, "dial-all", own, master, sibling)
	spec.Env = append(spec.Env, "BERTH_PIPE="+own)
	c := startChild(t, spec, Options{})
	ex, log := waitExit(t, c, spec.LogPath)
	if ex.Code != 0 {
		t.Fatalf("%v; log:\n%s", ex, log)
	}
	for _, want := range []string{"dial " + own + ": ok",
		"dial " + master + ": failed: dial unix " + master + ": connect: no such file or directory",
		"dial " + sibling + ": failed: dial unix " + sibling + ": connect: no such file or directory"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
