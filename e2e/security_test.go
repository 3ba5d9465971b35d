package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/freeports"
)

// browserPost sends what a web page at http://evil.example sends when it
// posts to the API with fetch(..., {mode: "no-cors"}): a cross-origin
// text/plain POST, which needs no preflight.
func browserPost(t *testing.T, addr, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+addr+"/v1/needs", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestBrowserCannotRunCommands is the repro with the real
// binaries: `lanmanager serve` started without a token, one master
// connected, and the POST a web page can send. It used to answer 201 and
// the master ran the command. Now the lanmanager made a token on its own,
// the browser defences refuse the request whether or not it carries the
// token, and nothing runs; with --insecure-no-token too.
func TestBrowserCannotRunCommands(t *testing.T) {
	for _, extra := range [][]string{nil, {"--insecure-no-token"}} {
		t.Run(strings.Join(append([]string{"serve"}, extra...), " "), func(t *testing.T) {
			l := startLan(t, "", extra...)
			if len(extra) == 0 {
				tokenFile := filepath.Join(l.dir, "data", "token")
				fi, err := os.Stat(tokenFile)
				if err != nil || fi.Mode().Perm() != 0o600 || len(l.token) != 64 {
					t.Fatalf("token file %s: %v %v, token %q; want a 0600 file with 64 hex digits", tokenFile, fi, err, l.token)
				}
				if b, _ := os.ReadFile(l.proc.log); !bytes.Contains(b, []byte("API token created in "+tokenFile)) {
					t.Errorf("the lanmanager did not say where its token is:\n%s", b)
				}
			}
			startMaster(t, l, "m1", 5)
			pwned := filepath.Join(t.TempDir(), "pwned")
			body := fmt.Sprintf(`{"name":"pwn","command":["sh","-c","id > %s; sleep 3600"]}`, pwned)

			auth := map[string]string{}
			if l.token != "" {
				auth["Authorization"] = "Bearer " + l.token
			}
			for _, h := range []map[string]string{{}, auth, {"Host": "evil.example"}} {
				code, resp := browserPost(t, l.addr, body, h)
				if code != http.StatusForbidden && code != http.StatusMisdirectedRequest {
					t.Errorf("cross-origin POST with %v: %d %s, want 403 (or 421 for a foreign Host)", h, code, resp)
				}
			}
			// DNS rebinding: the page's own name as Host cannot read the API.
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+l.addr+"/v1/needs", nil)
			req.Host = "evil.example:80"
			for k, v := range auth {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("GET with Host evil.example: %d, want 421", resp.StatusCode)
			}
			var list []json.RawMessage
			if err := json.Unmarshal([]byte(l.mustCLI(t, "need", "ls", "--json")), &list); err != nil || len(list) != 0 {
				t.Fatalf("needs after the attack: %d (%v), want none", len(list), err)
			}
			if _, err := os.Stat(pwned); err == nil {
				t.Fatal("the attacker's command ran")
			}
		})
	}
}

// TestCopiedMasterID is the repro: a second master started with a
// copy of the first one's master.id (a cloned VM image) used to be taken
// for the first one reconnecting, 40 times in 30 s, with every instance
// running twice. Now the copy is refused, says why at ERROR, waits before
// it asks again, and the first master and its children are untouched.
func TestCopiedMasterID(t *testing.T) {
	l := startLan(t, "")
	m1 := startMaster(t, l, "m1", 10)
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--", bin.hello)
	waitFor(t, 30*time.Second, "2 running", func() bool { return len(l.running(t, "web")) == 2 })
	before := l.running(t, "web")

	// The copy: its own config and runtime directory, the first's master.id.
	dir := t.TempDir()
	id, err := os.ReadFile(filepath.Join(m1.dir, "rt", "master.id"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "rt"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "rt", "master.id"), id, 0o600); err != nil {
		t.Fatal(err)
	}
	base := freeports.Block(t, 15)
	cfg, _ := json.Marshal(map[string]any{
		"lanmanageraddress": l.addr, "portrangestart": map[string]int{"tcp": base, "http": base + 5, "ws": base + 10},
		"portrangesize": 5, "runtimedirectory": "rt", "name": "m2", "advertiseaddress": "127.0.0.2", "token": l.token,
	})
	os.WriteFile(filepath.Join(dir, "masterconfig.json"), cfg, 0o600)
	marker := newMarker("m2")
	t.Cleanup(func() { killChildren(marker) })
	m2 := startProc(t, dir, "master-m2", []string{e2eMarkerEnv + "=" + marker}, bin.master, "run", "--config", filepath.Join(dir, "masterconfig.json"))

	want := "master id " + strings.TrimSpace(string(id)) + " is already connected as m1 from 127.0.0.1"
	waitFor(t, 20*time.Second, "the copy to be refused", func() bool {
		b, _ := os.ReadFile(m2.log)
		return bytes.Contains(b, []byte("level=ERROR")) && bytes.Contains(b, []byte(want))
	})
	lanLog, _ := os.ReadFile(l.proc.log)
	if !bytes.Contains(lanLog, []byte("level=ERROR msg=\"master refused\"")) || !bytes.Contains(lanLog, []byte("delete master.id")) {
		t.Errorf("the lanmanager did not log the refusal at ERROR:\n%s", tail(lanLog, 4000))
	}

	// Meanwhile the first master and its children are untouched, and no
	// instance runs twice.
	for range 10 {
		if !l.connected(t, "m1") {
			t.Fatal("m1 lost its link")
		}
		after := l.running(t, "web")
		if len(after) != 2 {
			t.Fatalf("running %d, want 2", len(after))
		}
		for name, in := range before {
			if a := after[name]; a == nil || a.PID != in.PID || a.Master != "m1" {
				t.Fatalf("%s: before %d on m1, now %+v", name, in.PID, a)
			}
		}
	}
	if m := l.master(t, "m2"); m != nil {
		t.Errorf("the copy is listed as a master: %+v", m)
	}
	if kids := childProcs(marker); len(kids) != 0 {
		t.Errorf("the copy runs %d children", len(kids))
	}
	b, _ := os.ReadFile(m2.log)
	if n := bytes.Count(b, []byte(want)); n != 1 {
		t.Errorf("the copy asked %d times while the test watched, want once (it must wait before asking again):\n%s", n, tail(b, 4000))
	}
}
