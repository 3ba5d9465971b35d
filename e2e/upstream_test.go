package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// curl returns the path of curl, a client no one here wrote that only
// takes its server in its arguments, skipping the test when there is none
// unless BERTH_E2E_CURL=require (.ci/run installs Debian's curl and sets
// it).
func curl(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("curl"); err == nil {
		return p
	}
	if os.Getenv("BERTH_E2E_CURL") == "require" {
		t.Fatal("no curl, and BERTH_E2E_CURL=require")
	}
	t.Skip("no curl (apt-get install curl); set BERTH_E2E_CURL=require to make this a failure")
	return ""
}

// upstreamClient is the command of a need whose children ask, over and
// over, the upstream named by ${BERTH_UPSTREAM_WEB} with curl, appending
// each answer to OUT/answers.<instance>, and copy their peers file to
// OUT/peers.<instance> (renamed into place, so a reader sees it whole).
func upstreamClient(curlPath, out string) []string {
	script := `while :; do
  "$1" -s -m 2 "http://$2/" >> "$3/answers.$BERTH_INSTANCE"; echo >> "$3/answers.$BERTH_INSTANCE"
  cp "$BERTH_PEERS_FILE" "$3/peers.$BERTH_INSTANCE.tmp" && mv -f "$3/peers.$BERTH_INSTANCE.tmp" "$3/peers.$BERTH_INSTANCE"
  sleep 0.1
done`
	return []string{"/bin/sh", "-c", script, "upstream-client", curlPath, "${BERTH_UPSTREAM_WEB}", out}
}

// TestUpstreamE2E is issue 10's upstreams and peers with the real binaries:
// app's children, on m1, run curl against ${BERTH_UPSTREAM_WEB}, an
// upstream to need web, whose 2 instances of examples/hello run on m2;
// they reach both. app's peers file follows its scale 1 → 2 → 1. With web
// scaled to 0 the upstream accepts and closes, and curl gets nothing; web
// back, the answers come again.
func TestUpstreamE2E(t *testing.T) {
	curlPath := curl(t)
	l := startLan(t, "tok")
	startMaster(t, l, "m1", 5)
	startMaster(t, l, "m2", 5)
	out := t.TempDir()
	if err := os.Chmod(out, 0o777); err != nil { // the children's user may not be ours
		t.Fatal(err)
	}
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--machine", "m2", "--", bin.hello)
	l.mustCLI(t, append([]string{"need", "add", "app", "--machine", "m1", "--upstream", "web=web:http", "--peers", "--"},
		upstreamClient(curlPath, out)...)...)
	waitFor(t, 60*time.Second, "web's 2 instances and app.0 running", func() bool {
		return len(l.running(t, "web")) == 2 && len(l.running(t, "app")) == 1
	})

	answers := func(instance string) string {
		b, _ := os.ReadFile(filepath.Join(out, "answers."+instance))
		return string(b)
	}
	waitUntil(t, 30*time.Second, "app.0 to reach both instances of web through its upstream", func() (bool, string) {
		a := answers("app.0")
		return strings.Contains(a, "hello from web.0") && strings.Contains(a, "hello from web.1"), tail([]byte(a), 300)
	})
	if st := l.need(t, "app"); len(st.Upstreams) != 1 || st.Upstreams[0].Need != "web" {
		t.Errorf("need show app: upstreams %+v, want web", st.Upstreams)
	}

	peers := func(instance string) []string {
		b, err := os.ReadFile(filepath.Join(out, "peers."+instance))
		if err != nil {
			return nil
		}
		var ps []struct {
			Instance string         `json:"instance"`
			Master   string         `json:"master"`
			Address  string         `json:"address"`
			Ports    map[string]int `json:"ports"`
		}
		if err := json.Unmarshal(b, &ps); err != nil {
			t.Fatalf("peers file of %s: %v: %q", instance, err, b)
		}
		var names []string
		for _, p := range ps {
			if p.Master != "m1" || p.Address == "" {
				t.Errorf("peer %+v of %s: want master m1 and an address", p, instance)
			}
			names = append(names, p.Instance)
		}
		slices.Sort(names)
		return names
	}
	wantPeers := func(instance string, want ...string) {
		t.Helper()
		waitUntil(t, 30*time.Second, fmt.Sprintf("%s's peers file to list %v", instance, want), func() (bool, string) {
			got := peers(instance)
			return slices.Equal(got, want), fmt.Sprint(got)
		})
	}
	wantPeers("app.0", "app.0")
	l.mustCLI(t, "need", "scale", "app", "2")
	wantPeers("app.0", "app.0", "app.1")
	wantPeers("app.1", "app.0", "app.1")
	l.mustCLI(t, "need", "scale", "app", "1")
	wantPeers("app.0", "app.0")

	// No instance of web: the upstream accepts and closes, curl gets
	// nothing; back, the answers come again.
	l.mustCLI(t, "need", "scale", "web", "0")
	waitFor(t, 30*time.Second, "web scaled to 0", func() bool { return len(l.running(t, "web")) == 0 })
	before := len(answers("app.0"))
	l.mustCLI(t, "need", "scale", "web", "1")
	waitUntil(t, 30*time.Second, "app.0 to reach web.0 again", func() (bool, string) {
		a := answers("app.0")
		return len(a) > before && strings.Contains(a[before:], "hello from web.0"), tail([]byte(a[before:]), 300)
	})
}
