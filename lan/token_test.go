package lan_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"berth/lan"
)

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, path, created, err := lan.LoadOrCreateToken(dir)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("first start: %q %s created=%v %v; want a new 64-digit token", tok, path, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v %v, want mode 0600", path, fi.Mode(), err)
	}
	again, _, created, err := lan.LoadOrCreateToken(dir)
	if err != nil || created || again != tok {
		t.Fatalf("second start: %q created=%v %v; want the same token %q", again, created, err, tok)
	}
	other, _, _, err := lan.LoadOrCreateToken(t.TempDir())
	if err != nil || other == tok {
		t.Fatalf("another data directory got token %q (%v); want a different one", other, err)
	}

	// A token others can read is refused, naming the fix.
	os.Chmod(path, 0o644)
	if _, _, _, err := lan.LoadOrCreateToken(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable token: %v, want a refusal that says chmod 600", err)
	}
	// A symlink planted in its place is not followed.
	os.Remove(path)
	target := filepath.Join(t.TempDir(), "planted")
	os.WriteFile(target, []byte("attacker-chosen\n"), 0o600)
	os.Symlink(target, path)
	if tok, _, _, err := lan.LoadOrCreateToken(dir); err == nil {
		t.Errorf("symlinked token file accepted: %q", tok)
	}
	// An empty token file is an error, not an empty token.
	os.Remove(path)
	os.WriteFile(path, nil, 0o600)
	if tok, _, _, err := lan.LoadOrCreateToken(dir); err == nil {
		t.Errorf("empty token file gave %q", tok)
	}
}

func TestFindToken(t *testing.T) {
	ann := filepath.Join(t.TempDir(), "announce")
	data := t.TempDir()
	tok, _, _, err := lan.LoadOrCreateToken(data)
	if err != nil {
		t.Fatal(err)
	}
	remove, err := lan.Announce(ann, "127.0.0.1:23999", data)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(ann)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("announce dir: %v %v, want 0700", fi.Mode(), err)
	}
	for _, addr := range []string{"127.0.0.1:23999", "http://127.0.0.1:23999", "http://localhost:23999", "ws://127.0.0.1:23999/v1/link"} {
		if got, _, ok := lan.FindToken(ann, addr); !ok || got != tok {
			t.Errorf("FindToken(%q) = %q %v, want the token", addr, got, ok)
		}
	}
	for _, addr := range []string{"127.0.0.1:24000", "http://10.1.2.3:23999", "http://berth.example:23999"} {
		if got, _, ok := lan.FindToken(ann, addr); ok {
			t.Errorf("FindToken(%q) = %q, want none (another lanmanager)", addr, got)
		}
	}
	// Announcements in a directory others may write to are not trusted.
	os.Chmod(ann, 0o777)
	if _, _, ok := lan.FindToken(ann, "127.0.0.1:23999"); ok {
		t.Error("FindToken trusted a world-writable announcement directory")
	}
	os.Chmod(ann, 0o700)
	if _, _, ok := lan.FindToken("", "127.0.0.1:23999"); ok {
		t.Error("FindToken without a directory found a token")
	}
	remove()
	if _, _, ok := lan.FindToken(ann, "127.0.0.1:23999"); ok {
		t.Error("FindToken found the token of a lanmanager that removed its announcement")
	}

	// The announcement of a lanmanager that died (kill -9) is ignored.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	b := []byte(`{"listen":"127.0.0.1:23998","data":"` + data + `","pid":` + strconv.Itoa(dead.Process.Pid) + `}`)
	os.WriteFile(filepath.Join(ann, "lanmanager-23998.json"), b, 0o600)
	if _, _, ok := lan.FindToken(ann, "127.0.0.1:23998"); ok {
		t.Error("FindToken used the announcement of a dead lanmanager")
	}
}

// TestAnnouncementOfAReusedPID: an announcement left by a lanmanager that
// died (kill -9, a reboot) names a pid the kernel may give to another
// process; the start time it records tells them apart, so neither the
// token nor the address is taken from it.
func TestAnnouncementOfAReusedPID(t *testing.T) {
	ann := filepath.Join(t.TempDir(), "announce")
	data := t.TempDir()
	if _, _, _, err := lan.LoadOrCreateToken(data); err != nil {
		t.Fatal(err)
	}
	if _, err := lan.Announce(ann, "127.0.0.1:23998", data); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := lan.FindToken(ann, "127.0.0.1:23998"); !ok || len(lan.Announced(ann)) != 1 {
		t.Fatal("the live announcement is not found")
	}
	path := filepath.Join(ann, "lanmanager-23998.json")
	var a map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &a); err != nil || a["start"] == nil {
		t.Fatalf("announcement %s: %v, want a start time", b, err)
	}
	a["start"] = 1 // this pid, another process's start
	b, _ = json.Marshal(a)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := lan.FindToken(ann, "127.0.0.1:23998"); ok {
		t.Error("FindToken trusted an announcement whose pid has another start time")
	}
	if got := lan.Announced(ann); len(got) != 0 {
		t.Errorf("Announced = %v, want none", got)
	}
}
