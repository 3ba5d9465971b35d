package lan_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/smalldisk"
	"berth/lan"
	"berth/needs"
)

// TestDiskFull: with lan.db on a full disk, a declaration is refused with
// an error (never acknowledged and then lost), the lanmanager keeps
// serving, and once there is room again everything acknowledged is there,
// across a restart too.
func TestDiskFull(t *testing.T) {
	disk := smalldisk.Mount(t, "2m")
	data := filepath.Join(disk, "data")
	cfg := lan.Config{DataDir: data}
	srv, c := startServer(t, cfg)
	zero := 0
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "before", Command: []string{"x"}, Instances: &zero}); err != nil {
		t.Fatal(err)
	}
	filler := smalldisk.Fill(t, disk)

	big := map[string]string{}
	for i := range 64 {
		big[strings.Repeat("K", 8)+string(rune('A'+i%26))+strings.Repeat("x", i)] = strings.Repeat("v", 4000)
	}
	refused := 0
	for i := range 20 {
		name := "full-" + string(rune('a'+i))
		_, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: name, Command: []string{"x"}, Instances: &zero, Env: big})
		if err != nil {
			refused++
			if errors.Is(err, needs.ErrInvalid) || !strings.Contains(err.Error(), "no space left on device") {
				t.Fatalf("a full disk answered %v; want an error that says the disk is full", err)
			}
			if _, err := c.Need(t.Context(), name); !errors.Is(err, needs.ErrNotFound) {
				t.Errorf("refused need %s is listed anyway: %v", name, err)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no declaration was refused on a full disk")
	}
	if _, err := c.Needs(t.Context()); err != nil {
		t.Fatalf("the lanmanager stopped answering on a full disk: %v", err)
	}

	os.Remove(filler)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "after", Command: []string{"x"}, Instances: &zero}); err != nil {
		t.Fatalf("with room again: %v", err)
	}
	acked, err := c.Needs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv2, c2 := startServer(t, cfg)
	defer srv2.Close()
	again, err := c2.Needs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(acked) {
		t.Errorf("after a restart %d needs, %d were acknowledged", len(again), len(acked))
	}
	t.Logf("refused %d of 20 declarations on the full disk; %d needs acknowledged, all there after a restart", refused, len(acked))
}
