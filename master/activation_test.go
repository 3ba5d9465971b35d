package master_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
)

// TestAgentSocketActivation: a socket-activated child that never binds
// anything (a shell that execs sleep with the inherited sockets) gets
// LISTEN_FDS, LISTEN_FDNAMES and its own pid in LISTEN_PID, and passes the
// lanmanager's port check on the sockets the master bound. Once it is
// stopped, its ports are free again: the master kept no copy of them.
func TestAgentSocketActivation(t *testing.T) {
	_, c, a := newPair(t)
	out := filepath.Join(t.TempDir(), "env")
	script := fmt.Sprintf(`sleep 0.3; echo "fds=$LISTEN_FDS names=$LISTEN_FDNAMES pid=$LISTEN_PID self=$$" > %s; exec sleep 600`, out)
	n := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "sa", Command: []string{"sh", "-c", script}, Instances: &n,
		Protocols: []needs.Protocol{needs.TCP, needs.HTTP}, SocketActivation: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the instance to run", func() bool { return running(t, c, "sa") == 1 })
	kids := a.Children()
	if len(kids) != 1 {
		t.Fatalf("Children = %+v", kids)
	}
	k := kids[0]
	// The master's own sockets pass the lanmanager's port check before the
	// shell has written its line: wait for the line, not for the port.
	var b []byte
	waitFor(t, 10*time.Second, "the child to write "+out, func() bool {
		b, _ = os.ReadFile(out)
		return bytes.HasSuffix(b, []byte("\n"))
	})
	want := fmt.Sprintf("fds=2 names=tcp:http pid=%d self=%d\n", k.PID, k.PID)
	if string(b) != want {
		t.Fatalf("child saw %q, want %q", b, want)
	}
	for _, p := range []needs.Protocol{needs.TCP, needs.HTTP} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(k.Ports[p]))
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("dial %s port %s: %v", p, addr, err)
		}
		conn.Close()
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			t.Fatalf("%s port %s could be bound while the child holds it", p, addr)
		}
	}

	if _, err := c.Scale(t.Context(), "sa", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the child to go", func() bool { return len(a.Children()) == 0 })
	if qs := a.Office().Quarantined(); len(qs) != 0 {
		t.Fatalf("ports quarantined after a clean stop: %+v", qs)
	}
	for _, port := range k.Ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d after the child stopped: %v", port, err)
		}
		l.Close()
	}
}

// TestAgentQuarantinesTakenPort: an outside process holds the port the
// master would lease first; the port is quarantined and the socket-activated
// child gets the next one without ever failing.
func TestAgentQuarantinesTakenPort(t *testing.T) {
	_, c, a := newPair(t)
	ranges := a.Office().Ranges()
	first := ranges[needs.HTTP].Start
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(first)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := filepath.Join(t.TempDir(), "fds")
	n := 1
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "sa", Command: []string{"sh", "-c", `echo "$LISTEN_FDS" > ` + out + `; exec sleep 600`},
		Instances: &n, Protocols: []needs.Protocol{needs.HTTP}, SocketActivation: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the instance to run", func() bool { return running(t, c, "sa") == 1 })
	k := a.Children()[0]
	if k.Ports[needs.HTTP] == first {
		t.Fatalf("child got the port an outside process holds")
	}
	st, err := c.Need(t.Context(), "sa")
	if err != nil {
		t.Fatal(err)
	}
	if in := st.InstanceList[0]; in.Restarts != 0 {
		t.Fatalf("restarts %d, want 0: the child never failed", in.Restarts)
	}
	var b []byte
	waitFor(t, 10*time.Second, "the child to write "+out, func() bool {
		b, _ = os.ReadFile(out)
		return bytes.HasSuffix(b, []byte("\n"))
	})
	if strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("child saw LISTEN_FDS=%q", b)
	}
	qs := a.Office().Quarantined()
	if len(qs) != 1 || qs[0].Port != first {
		t.Fatalf("Quarantined = %+v, want %d", qs, first)
	}
}
