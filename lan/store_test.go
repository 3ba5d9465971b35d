package lan_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/boltfile"
	"berth/lan"
	"berth/needs"
)

// writeStore makes a real lan.db in dir holding n needs (checkpointed
// into it from the journal) and returns its bytes.
func writeStore(t *testing.T, dir string, n int) []byte {
	t.Helper()
	path := filepath.Join(dir, "lan.db")
	st, err := lan.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var c lan.Change
	for i := range n {
		c.PutNeeds = append(c.PutNeeds, &needs.Need{Name: fmt.Sprintf("need-%04d", i), Instances: 1,
			Command: []string{"sh", "-c", strings.Repeat("echo padding; ", 8)}})
	}
	if err := errors.Join(st.Apply(&c), st.Checkpoint(), st.Close()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenDamagedStore is the repro of `truncate -s 20000 lan.db`, which
// crashed the lanmanager with SIGSEGV inside bbolt: the store, and the
// lanmanager, refuse the file with an error naming it and saying what to
// do, at several sizes and for garbage.
func TestOpenDamagedStore(t *testing.T) {
	orig := writeStore(t, t.TempDir(), 300)
	if len(orig) <= 40000 {
		t.Fatalf("lan.db is %d bytes: too small for the test", len(orig))
	}
	garbage := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range garbage {
		garbage[i] = byte(r.Uint32())
	}
	cases := map[string][]byte{"garbage": garbage, "zeroed": make([]byte, 32<<10)}
	for _, size := range []int{100, 4096, 8192 + 100, 20000, 32768} {
		cases[fmt.Sprintf("truncated to %d", size)] = orig[:size]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "lan.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := lan.OpenStore(path)
			if !errors.Is(err, boltfile.ErrDamaged) || !strings.Contains(err.Error(), path+" is damaged") ||
				!strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("OpenStore: %v, want the file named as damaged", err)
			}
			if name == "truncated to 20000" && !strings.Contains(err.Error(), "file is 20000 bytes, its meta page says") {
				t.Errorf("OpenStore: %v does not give the sizes", err)
			}
			srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: dir,
				Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
			if err == nil {
				srv.Close()
				t.Fatal("the lanmanager started on a damaged lan.db")
			}
			if !errors.Is(err, boltfile.ErrDamaged) || !strings.Contains(err.Error(), "lan.db is damaged") {
				t.Fatalf("lan.Open: %v, want lan.db named as damaged", err)
			}
		})
	}
}

// TestOpenStoreWhole: a whole file, and one cut after its high-water mark
// (bbolt grows files ahead of use), open with their needs.
func TestOpenStoreWhole(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 300)
	st, err := lan.OpenStore(filepath.Join(dir, "lan.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ns, _, err := st.Load()
	if err != nil || len(ns) != 300 {
		t.Fatalf("Load: %d needs, %v; want 300", len(ns), err)
	}
}

// TestCloseWithSilentConnection: a client that opened a TCP connection to
// the API and never sent a request (a dial cancelled after connect leaves
// exactly that in an HTTP client's pool) does not make Close fail; Close
// waits its grace, closes the connection and keeps what was written.
func TestCloseWithSilentConnection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, c := startServer(t, lan.Config{DataDir: dir})
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "kept", Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close with a silent connection open: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the silent connection after Close: read %v, want EOF", err)
	}
	srv2, c2 := startServer(t, lan.Config{DataDir: dir})
	defer srv2.Close()
	if _, err := c2.Need(t.Context(), "kept"); err != nil {
		t.Errorf("the need written before Close: %v", err)
	}
}
