package child_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"berth/child"
)

// TestListenHelper is not a test: it is the body of the process the
// socket activation tests start, when CHILD_LISTEN_HELPER names the
// protocols to serve. It takes each protocol's socket with child.Listen,
// prints what it got and what is left of the LISTEN_* variables, then
// answers one connection per socket with the protocol's name.
func TestListenHelper(t *testing.T) {
	protos := os.Getenv("CHILD_LISTEN_HELPER")
	if protos == "" {
		return
	}
	var ls []net.Listener
	for _, p := range strings.Split(protos, ",") {
		l, err := child.Listen(p)
		if err != nil {
			fmt.Printf("error %s: %v\n", p, err)
			os.Exit(3)
		}
		fmt.Printf("listening %s %s\n", p, l.Addr())
		ls = append(ls, l)
	}
	rest, err := child.Listeners()
	fmt.Printf("rest %v %v\n", slices.Sorted(maps.Keys(rest)), err)
	for _, k := range []string{child.EnvListenPID, child.EnvListenFDs, child.EnvListenNames} {
		if v, ok := os.LookupEnv(k); ok {
			fmt.Printf("still set %s=%s\n", k, v)
		}
	}
	fmt.Println("ready")
	for i, l := range ls {
		c, err := l.Accept()
		if err != nil {
			fmt.Printf("accept: %v\n", err)
			os.Exit(4)
		}
		fmt.Fprintln(c, strings.Split(protos, ",")[i])
		c.Close()
	}
	os.Exit(0)
}

// startHelper starts the test binary as TestListenHelper with files as fd
// 3 and up, through a shell that sets LISTEN_PID to the helper's pid as a
// berth master does (spawn.Spec.ListenPID). It returns the helper's output
// up to "ready" (or its end).
func startHelper(t *testing.T, protos string, env []string, files ...*os.File) (string, *exec.Cmd) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`, "berth-listen", exe, "-test.run=^TestListenHelper$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTEN_") && !strings.HasPrefix(kv, "BERTH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append(env, "CHILD_LISTEN_HELPER="+protos, "GORACE=atexit_sleep_ms=0")...)
	cmd.ExtraFiles = files
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var b bytes.Buffer
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if line == "ready\n" || err != nil {
			break
		}
	}
	go io.Copy(io.Discard, r)
	return b.String(), cmd
}

// socketFile is a listening socket on 127.0.0.1 as a file to pass on; the
// parent's listener is closed.
func socketFile(t *testing.T) (*os.File, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, l.Addr().String()
}

// TestListenInherited: sockets passed by the systemd convention are served
// by child.Listen under their names, the variables are gone afterwards,
// and Listeners has nothing left to give.
func TestListenInherited(t *testing.T) {
	tcp, tcpAddr := socketFile(t)
	http, httpAddr := socketFile(t)
	out, cmd := startHelper(t, "http,tcp", []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=tcp:http"}, tcp, http)
	want := fmt.Sprintf("listening http %s\nlistening tcp %s\nrest [] <nil>\nready\n", httpAddr, tcpAddr)
	if out != want {
		t.Fatalf("helper said:\n%s\nwant:\n%s", out, want)
	}
	// In the order the helper accepts.
	for _, pa := range [][2]string{{"http", httpAddr}, {"tcp", tcpAddr}} {
		proto, addr := pa[0], pa[1]
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if string(b) != proto+"\n" {
			t.Fatalf("%s socket answered %q, %v", proto, b, err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}

	// Listen takes one; Listeners hands out the other.
	out, _ = startHelper(t, "tcp", []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=tcp:http"}, tcp, http)
	if want := fmt.Sprintf("listening tcp %s\nrest [http] <nil>\nready\n", tcpAddr); out != want {
		t.Fatalf("helper said:\n%s\nwant:\n%s", out, want)
	}
}

// TestListenNotASocket: an fd that is not a listening socket is an error
// naming it, not a listener on something else.
func TestListenNotASocket(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tt := range []struct {
		name string
		file *os.File
		want string
	}{
		{"pipe", r, "not a socket"},
		// Nothing passed: fd 3 is closed, or something of the runtime's
		// that must be left alone.
		{"missing", nil, "not "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var files []*os.File
			if tt.file != nil {
				files = append(files, tt.file)
			}
			out, _ := startHelper(t, "http", []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=http"}, files...)
			if want := "error http: LISTEN_FDS: fd 3 (http): " + tt.want; !strings.HasPrefix(out, want) {
				t.Fatalf("helper said %q, want %q", out, want)
			}
		})
	}
}
