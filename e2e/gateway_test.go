package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// gwReply is a gateway frame, decoded.
type gwReply struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       json.RawMessage   `json:"body"`
}

func gwDial(t *testing.T, addr, need string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/"+need, nil)
	return c, err
}

func gwAsk(t *testing.T, c *websocket.Conn, msg string) (gwReply, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return gwReply{}, err
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		return gwReply{}, err
	}
	var r gwReply
	return r, json.Unmarshal(b, &r)
}

// TestGatewayE2E is issue 12's gateway with the real binaries: a need
// published with --gateway, reached by a Go client (coder/websocket) and
// by a Node ws client; the instances get the gateway token and a service
// pushes with it; after a restart of the lanmanager, clients reconnect.
func TestGatewayE2E(t *testing.T) {
	gwAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l := startLan(t, "tok", "--gateway-listen", gwAddr)
	startMaster(t, l, "m1", 5)
	dir := t.TempDir()
	l.mustCLI(t, "need", "add", "web", "--instances", "2", "--protocols", "http", "--gateway", "--",
		"sh", "-c", `echo "$BERTH_GATEWAY_TOKEN" > `+dir+`/token.$BERTH_INSTANCE; exec `+bin.hello)
	waitFor(t, 60*time.Second, "2 running", func() bool { return len(l.running(t, "web")) == 2 })
	token := strings.TrimSpace(readFile(t, filepath.Join(l.dir, "data", "gateway-token")))
	for _, in := range []string{"web.0", "web.1"} {
		if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "token."+in))); got != token || len(token) != 64 {
			t.Errorf("%s got BERTH_GATEWAY_TOKEN %q, want the gateway's token", in, got)
		}
	}

	c, err := gwDial(t, gwAddr, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	seen := map[string]bool{}
	for i := range 4 {
		r, err := gwAsk(t, c, fmt.Sprintf(`{"name":"anything","headers":{"message-id":"m%d"}}`, i))
		var body string
		json.Unmarshal(r.Body, &body)
		if err != nil || r.StatusCode != 200 || r.Headers["message-id"] != fmt.Sprintf("m%d", i) || !strings.HasPrefix(body, "hello from web.") {
			t.Fatalf("message %d: %+v %v", i, r, err)
		}
		seen[strings.TrimSpace(body)] = true
	}
	if len(seen) != 2 {
		t.Errorf("4 messages were answered by %v, want both instances", seen)
	}
	if _, err := gwDial(t, gwAddr, "nope"); err == nil {
		t.Error("a need not published: the socket opened")
	}

	// A service pushes with the token to the postback URL.
	req, _ := http.NewRequest(http.MethodGet, "http://"+gwAddr+"/@connections", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var conns []struct{ ID, Need string }
	json.NewDecoder(resp.Body).Decode(&conns)
	resp.Body.Close()
	if len(conns) != 1 || conns[0].Need != "web" {
		t.Fatalf("connections %+v", conns)
	}
	req, _ = http.NewRequest(http.MethodPost, "http://"+gwAddr+"/@connections/"+conns[0].ID, strings.NewReader(`{"news":1}`))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %v %v", resp, err)
	}
	if _, b, err := c.Read(t.Context()); err != nil || string(b) != `{"news":1}` {
		t.Errorf("pushed frame %q %v", b, err)
	}

	// A Node client with the ws package.
	if node, modules := wsModules(t); node != "" {
		script := filepath.Join(t.TempDir(), "client.js")
		os.WriteFile(script, []byte(`const WebSocket = require('ws');
const ws = new WebSocket(process.argv[2]);
ws.on('open', () => ws.send(JSON.stringify({name: 'hi', headers: {'message-id': 'node-1'}})));
ws.on('message', (data) => { console.log(data.toString()); ws.close(); });
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
`), 0o600)
		cmd := exec.CommandContext(t.Context(), node, script, "ws://"+gwAddr+"/web")
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
		out, err := cmd.CombinedOutput()
		var r gwReply
		if err != nil || json.Unmarshal(out, &r) != nil || r.StatusCode != 200 || r.Headers["message-id"] != "node-1" {
			t.Errorf("the Node ws client got %s (%v)", out, err)
		}
	}

	// The lanmanager restarts: the socket ends, and a client that dials
	// again is answered once it is back.
	l.kill9()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	_, _, err = c.Read(ctx)
	cancel()
	if err == nil {
		t.Error("the socket outlived the lanmanager")
	}
	restarted := time.Now()
	l.restart(t)
	waitUntil(t, 30*time.Second, "a client to reconnect and be answered", func() (bool, string) {
		c2, err := gwDial(t, gwAddr, "web")
		if err != nil {
			return false, err.Error()
		}
		defer c2.CloseNow()
		r, err := gwAsk(t, c2, `{"name":"again","headers":{"message-id":"r1"}}`)
		return err == nil && r.StatusCode == 200, fmt.Sprintf("%+v %v", r, err)
	})
	t.Logf("a client was answered again %s after the lanmanager restarted", time.Since(restarted).Round(10*time.Millisecond))
}

// wsModules installs the ws npm package (the version of
// examples/acebase/package.json) and returns node and its node_modules;
// "" when Node or the registry is missing, unless BERTH_E2E_ACEBASE=require.
func wsModules(t *testing.T) (node, modules string) {
	t.Helper()
	fail := func(format string, args ...any) (string, string) {
		if os.Getenv(requireAceBase) == "require" {
			t.Fatalf(format, args...)
		}
		t.Logf("skipping the Node client: "+format, args...)
		return "", ""
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return fail("node: %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fail("npm: %v", err)
	}
	var pkg struct{ Dependencies map[string]string }
	b, _ := os.ReadFile("../examples/acebase/package.json")
	json.Unmarshal(b, &pkg)
	dir := t.TempDir()
	out, err := exec.CommandContext(t.Context(), npm, "install", "--no-audit", "--no-fund", "--prefix", dir, "ws@"+pkg.Dependencies["ws"]).CombinedOutput()
	if err != nil {
		return fail("npm install ws: %v\n%s", err, out)
	}
	return node, filepath.Join(dir, "node_modules")
}

// TestGatewayExample runs docs/gateway.md's worked example
// (examples/gateway) behind the gateway: on_connect refuses a client that
// does not say who it is (1008 with the status and the service's words),
// a message is echoed by an instance, and /later answers 202 at once and
// pushes the result a second later through the postback URL, with the
// token the instance got.
func TestGatewayExample(t *testing.T) {
	gwAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l := startLan(t, "tok", "--gateway-listen", gwAddr)
	startMaster(t, l, "m1", 5)
	l.mustCLI(t, "need", "add", "chat", "--instances", "2", "--protocols", "http", "--gateway", "--", bin.gateway)
	waitFor(t, 60*time.Second, "2 running", func() bool { return len(l.running(t, "chat")) == 2 })

	anon, err := gwDial(t, gwAddr, "chat")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = anon.Read(t.Context())
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "Policy Violation: 403 say who you are: an X-Name header" {
		t.Errorf("a client without X-Name: %v, want 1008 with the service's refusal", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+gwAddr+"/chat", &websocket.DialOptions{HTTPHeader: http.Header{"X-Name": {"ada"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	r, err := gwAsk(t, c, `{"name":"echo","payload":{"text":"hi"},"headers":{"message-id":"e1"}}`)
	var echo struct {
		Instance string
		Echo     map[string]string
	}
	if err != nil || r.StatusCode != 200 || r.Headers["message-id"] != "e1" || json.Unmarshal(r.Body, &echo) != nil ||
		echo.Echo["text"] != "hi" || !strings.HasPrefix(echo.Instance, "chat.") {
		t.Fatalf("echo: %+v %v", r, err)
	}
	if r, err = gwAsk(t, c, `{"name":"later","headers":{"message-id":"l1"}}`); err != nil || r.StatusCode != http.StatusAccepted || r.Headers["message-id"] != "l1" {
		t.Fatalf("later: %+v %v, want 202 with l1", r, err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	_, b, err := c.Read(ctx2)
	var pushed map[string]string
	if err != nil || json.Unmarshal(b, &pushed) != nil || pushed["done"] != "l1" || !strings.HasPrefix(pushed["instance"], "chat.") {
		t.Errorf("the push after the 202: %s %v", b, err)
	}
}

// lanRSS is the lanmanager process's resident set, in bytes.
func lanRSS(t *testing.T, l *lanEnv) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", l.proc.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestGatewayConformance is the rest of issue 12's table with the real
// binaries: a frame that is not JSON, a stream to a client that stops
// reading (the instance is held back and the lanmanager's memory stays
// put), a push to a connection that has gone (410), a message over the
// size limit (1009), and an instance killed mid-request (500 with the
// message-id).
func TestGatewayConformance(t *testing.T) {
	gwAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l := startLan(t, "tok", "--gateway-listen", gwAddr)
	startMaster(t, l, "m1", 5)
	state := filepath.Join(t.TempDir(), "stream")
	l.mustCLI(t, "need", "add", "svc", "--protocols", "http", "--gateway", "--env", "GWSERVICE_STATE="+state, "--", bin.gwservice)
	waitFor(t, 60*time.Second, "svc running", func() bool { return len(l.running(t, "svc")) == 1 })
	token := strings.TrimSpace(readFile(t, filepath.Join(l.dir, "data", "gateway-token")))
	c, err := gwDial(t, gwAddr, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	// Not JSON: to /, the text as the body.
	r, err := gwAsk(t, c, "plain words")
	var body string
	json.Unmarshal(r.Body, &body)
	if err != nil || r.StatusCode != 200 || body != "/  plain words" {
		t.Errorf("a frame that is not JSON: %+v %q %v", r, body, err)
	}

	// A stream to a client that reads one frame and then nothing.
	rssBefore := lanRSS(t, l)
	slow, err := gwDial(t, gwAddr, "svc")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	slow.Write(ctx, websocket.MessageText, []byte(`{"name":"stream","headers":{"message-id":"s1"}}`))
	_, first, err := slow.Read(ctx)
	cancel()
	if err != nil || !strings.Contains(string(first), `"x-stream":"chunk"`) {
		t.Fatalf("first stream frame %.200s %v", first, err)
	}
	var written int64
	waitUntil(t, 30*time.Second, "the service to be held back", func() (bool, string) {
		b, _ := os.ReadFile(state)
		fmt.Sscan(string(b), &written)
		return strings.HasSuffix(string(b), "blocked"), string(b)
	})
	grew := lanRSS(t, l) - rssBefore
	t.Logf("the service was held back after %d KiB of 64 MiB; the lanmanager's RSS grew %d KiB", written>>10, grew>>10)
	if written > 32<<20 || grew > 32<<20 {
		t.Errorf("held back after %d MiB, lanmanager RSS +%d MiB: the gateway should buffer little", written>>20, grew>>20)
	}
	slow.CloseNow()

	// A connection that has gone: 410.
	list := func() []string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+gwAddr+"/@connections", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var conns []struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&conns)
		var ids []string
		for _, c := range conns {
			ids = append(ids, c.ID)
		}
		return ids
	}
	before := list()
	gone, err := gwDial(t, gwAddr, "svc")
	if err != nil {
		t.Fatal(err)
	}
	// The gateway lists a connection once the service's on_connect has
	// accepted it, which may be after the client's handshake returned.
	var goneID string
	waitUntil(t, 10*time.Second, "the new connection in the list", func() (bool, string) {
		now := list()
		for _, id := range now {
			if !slices.Contains(before, id) {
				goneID = id
				return true, ""
			}
		}
		return false, fmt.Sprint(now)
	})
	gone.Close(websocket.StatusNormalClosure, "bye")
	waitUntil(t, 10*time.Second, "the closed connection to leave the list", func() (bool, string) {
		now := list()
		return !slices.Contains(now, goneID), fmt.Sprint(now)
	})
	req, _ := http.NewRequest(http.MethodPost, "http://"+gwAddr+"/@connections/"+goneID, strings.NewReader("late"))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusGone {
		t.Errorf("a push to a gone connection: %v %v, want 410", resp, err)
	} else {
		resp.Body.Close()
	}

	// Over the size limit (64 KiB): 1009.
	big, err := gwDial(t, gwAddr, "svc")
	if err != nil {
		t.Fatal(err)
	}
	big.Write(t.Context(), websocket.MessageText, []byte(`{"name":"echo","payload":"`+strings.Repeat("z", 70<<10)+`"}`))
	if _, _, err := big.Read(t.Context()); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("a message over 64 KiB: %v, want 1009", err)
	}

	// The instance dies mid-request: 500 with the message-id.
	r, err = gwAsk(t, c, `{"name":"die","headers":{"message-id":"d1"}}`)
	if err != nil || r.StatusCode != 500 || r.Headers["message-id"] != "d1" {
		t.Errorf("the instance died mid-request: %+v %v, want 500 with d1", r, err)
	}
}
