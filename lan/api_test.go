package lan_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// newTestServer starts a lanmanager on a loopback port with a fresh data
// directory and returns it with a client that carries token.
func newTestServer(t *testing.T, token string) (*lan.Server, *lan.Client) {
	t.Helper()
	return startServer(t, lan.Config{Token: token})
}

// startServer starts a lanmanager with cfg, filling in a loopback listen
// address, a fresh data directory and a test logger where cfg leaves them
// empty. Close is registered with t.Cleanup (it is idempotent, so tests may
// close earlier).
func startServer(t *testing.T, cfg lan.Config) (*lan.Server, *lan.Client) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	srv, err := lan.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("lan.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv, &lan.Client{Addr: srv.Addr(), Token: cfg.Token}
}

func TestAPIBadRequests(t *testing.T) {
	srv, _ := newTestServer(t, "")
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   int
		wantIn []string // substrings of the error message
	}{
		{"malformed JSON", "POST", "/v1/needs", `{"name": nope}`, 400, []string{"malformed"}},
		{"not JSON", "POST", "/v1/needs", `not json`, 400, []string{"malformed"}},
		{"empty body", "POST", "/v1/needs", ``, 400, []string{"empty"}},
		{"trailing data", "POST", "/v1/needs", `{"name":"a","command":["x"]} {}`, 400, []string{"trailing"}},
		{"trailing brace", "POST", "/v1/needs", `{"name":"a","command":["x"]}}`, 400, []string{"trailing"}},
		{"truncated JSON", "POST", "/v1/needs", `{"name":"a"`, 400, []string{"malformed"}},
		{"unknown field", "POST", "/v1/needs", `{"name":"a","command":["x"],"replicas":2}`, 400, []string{"replicas"}},
		{"wrong type", "POST", "/v1/needs", `{"name":"a","command":["x"],"instances":"2"}`, 400, []string{"instances"}},
		{"no command", "POST", "/v1/needs", `{"name":"a"}`, 400, []string{"command"}},
		{"empty command", "POST", "/v1/needs", `{"name":"a","command":[]}`, 400, []string{"command"}},
		{"blank command", "POST", "/v1/needs", `{"name":"a","command":["  "]}`, 400, []string{"command"}},
		{"bad name", "POST", "/v1/needs", `{"name":"Web_1","command":["x"]}`, 400, []string{"name"}},
		{"no name", "POST", "/v1/needs", `{"command":["x"]}`, 400, []string{"name"}},
		{"instances -1", "POST", "/v1/needs", `{"name":"a","command":["x"],"instances":-1}`, 400, []string{"instances"}},
		{"instances too many", "POST", "/v1/needs", `{"name":"a","command":["x"],"instances":1001}`, 400, []string{"instances"}},
		{"unknown protocol", "POST", "/v1/needs", `{"name":"a","command":["x"],"protocols":["udp"]}`, 400, []string{"protocol", "udp"}},
		{"duplicate protocol", "POST", "/v1/needs", `{"name":"a","command":["x"],"protocols":["tcp","tcp"]}`, 400, []string{"protocols[1]"}},
		{"reserved env", "POST", "/v1/needs", `{"name":"a","command":["x"],"env":{"PORT":"1"}}`, 400, []string{"PORT"}},
		{"bad machine", "POST", "/v1/needs", `{"name":"a","command":["x"],"machine":"M!"}`, 400, []string{"machine"}},
		{"restart delay not a duration", "POST", "/v1/needs", `{"name":"a","command":["x"],"restart":{"delay":"soon"}}`, 400, []string{"restart.delay", "duration", "soon"}},
		{"restart delay fractional ms", "POST", "/v1/needs", `{"name":"a","command":["x"],"restart":{"max_delay":1.5}}`, 400, []string{"restart.max_delay"}},
		{"restart factor too big", "POST", "/v1/needs", `{"name":"a","command":["x"],"restart":{"factor":20}}`, 400, []string{"restart.factor"}},
		{"restart negative reset", "POST", "/v1/needs", `{"name":"a","command":["x"],"restart":{"reset_after":"-1s"}}`, 400, []string{"restart.reset_after"}},
		{"restart local attempts", "POST", "/v1/needs", `{"name":"a","command":["x"],"restart":{"local_attempts":101}}`, 400, []string{"restart.local_attempts"}},
		{"restart unknown field", "POST", "/v1/needs", `{"name":"a","command":["x"],"restart":{"retries":3}}`, 400, []string{"retries"}},
		{"limits memory not a size", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"memory":"lots"}}`, 400, []string{"limits.memory", "lots"}},
		{"limits memory negative", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"memory":-1}}`, 400, []string{"limits.memory"}},
		{"limits memory under 1M", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"memory":"512K"}}`, 400, []string{"limits.memory", "1M"}},
		{"limits cpus zero or less", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"cpus":-0.5}}`, 400, []string{"limits.cpus"}},
		{"limits cpus too many", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"cpus":1e6}}`, 400, []string{"limits.cpus", "8192"}},
		{"limits cpus not a number", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"cpus":"half"}}`, 400, []string{"limits.cpus"}},
		{"limits pids negative", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"pids":-1}}`, 400, []string{"limits.pids"}},
		{"limits pids fractional", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"pids":1.5}}`, 400, []string{"limits.pids"}},
		{"limits unknown field", "POST", "/v1/needs", `{"name":"a","command":["x"],"limits":{"disk":"1G"}}`, 400, []string{"disk"}},
		{"socket activation without ports", "POST", "/v1/needs", `{"name":"a","command":["x"],"socket_activation":true}`, 400, []string{"socket_activation"}},
		{"body over 1 MiB", "POST", "/v1/needs", bigBody(), 400, []string{"larger than"}},
		{"get unknown", "GET", "/v1/needs/nope", ``, 404, []string{"nope", "not found"}},
		{"patch unknown", "PATCH", "/v1/needs/nope", `{"instances":1}`, 404, []string{"nope"}},
		{"delete unknown", "DELETE", "/v1/needs/nope", ``, 404, []string{"nope"}},
		{"no route", "GET", "/v2/needs", ``, 404, []string{"/v2/needs"}},
		{"method not allowed", "PUT", "/v1/needs", `{}`, 405, []string{"PUT /v1/needs", "GET, POST"}},
		{"unknown path", "GET", "/v1/nope", ``, 404, []string{"/v1/nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, srv, tt.method, tt.path, "", tt.body)
			if code != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, body, tt.want)
			}
			msg := errorMessage(t, body)
			for _, s := range tt.wantIn {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			if names := needNames(t, srv, ""); len(names) != 0 {
				t.Errorf("after a refused request, needs = %v, want none", names)
			}
			if svcs := services(t, &lan.Client{Addr: srv.Addr()}); len(svcs) != 0 {
				t.Errorf("after a refused request, services = %v, want none", svcs)
			}
		})
	}
}

func TestAPIConflictsAndScale(t *testing.T) {
	srv, c := newTestServer(t, "")
	code, body := call(t, srv, "POST", "/v1/needs", "", `{"name":"web","command":["/bin/srv","-x"],"protocols":["http"],"env":{"A":"b=c"}}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/needs = %d %s, want 201", code, body)
	}
	var st needs.NeedStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Name != "web" || st.Instances != 1 || len(st.InstanceList) != 1 || st.InstanceList[0].Name != "web.0" ||
		st.InstanceList[0].State != needs.Pending || st.Env["A"] != "b=c" || st.Created.IsZero() {
		t.Errorf("created need = %+v, want web with 1 pending instance web.0 (instances defaults to 1)", st)
	}

	code, body = call(t, srv, "POST", "/v1/needs", "", `{"name":"web","command":["other"],"instances":5}`)
	if code != http.StatusConflict {
		t.Fatalf("duplicate POST = %d %s, want 409", code, body)
	}
	if msg := errorMessage(t, body); !strings.Contains(msg, "web") {
		t.Errorf("conflict error %q does not name the need", msg)
	}
	got := getNeed(t, c, "web")
	if got.Instances != 1 || !slices.Equal(got.Command, []string{"/bin/srv", "-x"}) || len(got.InstanceList) != 1 {
		t.Errorf("duplicate POST changed the need: %+v", got)
	}

	for _, body := range []string{`{}`, `{"instances":null}`} {
		code, resp := call(t, srv, "PATCH", "/v1/needs/web", "", body)
		if code != http.StatusBadRequest || !strings.Contains(errorMessage(t, resp), "instances") {
			t.Errorf("PATCH %s = %d %s, want 400 naming instances", body, code, resp)
		}
	}
	code, body = call(t, srv, "PATCH", "/v1/needs/web", "", `{"instances":-1}`)
	if code != http.StatusBadRequest || !strings.Contains(errorMessage(t, body), "instances") {
		t.Errorf("PATCH -1 = %d %s, want 400 naming instances", code, body)
	}
	code, body = call(t, srv, "PATCH", "/v1/needs/web", "", `{"instances":2,"extra":1}`)
	if code != http.StatusBadRequest || !strings.Contains(errorMessage(t, body), "extra") {
		t.Errorf("PATCH with unknown field = %d %s, want 400 naming it", code, body)
	}
	if got := getNeed(t, c, "web"); got.Instances != 1 || len(got.InstanceList) != 1 {
		t.Errorf("refused PATCHes changed the need: %+v", got)
	}

	code, body = call(t, srv, "PATCH", "/v1/needs/web", "", `{"instances":3}`)
	if code != http.StatusOK {
		t.Fatalf("PATCH 3 = %d %s", code, body)
	}
	if got := getNeed(t, c, "web"); got.Instances != 3 || len(got.InstanceList) != 3 {
		t.Errorf("after scale to 3: %+v", got)
	}
	if names := needNames(t, srv, ""); !slices.Equal(names, []string{"web"}) {
		t.Errorf("needs = %v, want [web]", names)
	}

	code, body = call(t, srv, "DELETE", "/v1/needs/web", "", "")
	if code != http.StatusOK {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	code, body = call(t, srv, "GET", "/v1/needs/web", "", "")
	if code != http.StatusNotFound {
		t.Errorf("GET after DELETE = %d %s, want 404", code, body)
	}
	code, body = call(t, srv, "DELETE", "/v1/needs/web", "", "")
	if code != http.StatusNotFound {
		t.Errorf("second DELETE = %d %s, want 404", code, body)
	}
	if _, err := c.Need(t.Context(), "web"); !errors.Is(err, needs.ErrNotFound) {
		t.Errorf("client Need after DELETE = %v, want ErrNotFound", err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "Bad"}); !errors.Is(err, needs.ErrInvalid) {
		t.Errorf("client AddNeed(bad) = %v, want ErrInvalid", err)
	}
}

func TestAPIAuth(t *testing.T) {
	const token = "s3cret-token"
	srv, c := newTestServer(t, token)
	endpoints := []struct{ method, path, body string }{
		{"GET", "/v1/needs", ""},
		{"POST", "/v1/needs", `{"name":"web","command":["x"]}`},
		{"GET", "/v1/needs/web", ""},
		{"PATCH", "/v1/needs/web", `{"instances":2}`},
		{"DELETE", "/v1/needs/web", ""},
		{"GET", "/v1/services", ""},
		{"GET", "/v1/masters", ""},
		{"GET", "/v1/events", ""},
		{"GET", "/v1/link", ""},
		{"GET", "/nope", ""},
		{"POST", "/v1/needs/web/restart", ""},
		{"POST", "/v1/masters/m1/drain", ""},
		{"POST", "/v1/masters/m1/undrain", ""},
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Bearer", token, "Basic " + token, "bearer " + token} {
		for _, e := range endpoints {
			code, body := call(t, srv, e.method, e.path, auth, e.body)
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q = %d %s, want 401", e.method, e.path, auth, code, body)
				continue
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, "token") {
				t.Errorf("401 error %q does not mention the token", msg)
			}
		}
	}
	// Nothing was created by the refused calls.
	if names := needNames(t, srv, "Bearer "+token); len(names) != 0 {
		t.Fatalf("needs after unauthorized calls = %v, want none", names)
	}

	want := []int{200, 201, 200, 200, 200, 200, 200}
	for i, e := range endpoints[:7] {
		code, body := call(t, srv, e.method, e.path, "Bearer "+token, e.body)
		if code != want[i] {
			t.Errorf("%s %s with the token = %d %s, want %d", e.method, e.path, code, body, want[i])
		}
	}
	// The WebSocket endpoints accept the token.
	ws, _, err := websocket.Dial(t.Context(), "ws://"+srv.Addr()+"/v1/events",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Errorf("dial /v1/events with the token: %v", err)
	} else {
		ws.CloseNow()
	}
	_, resp, err := websocket.Dial(t.Context(), "ws://"+srv.Addr()+"/v1/events", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dial /v1/events without the token: resp %v, err %v; want 401", resp, err)
	}
	m := dialMaster(t, srv, token, "0123456789abcdef", "m1")
	if ms, err := c.Masters(t.Context()); err != nil || len(ms) != 1 || ms[0].Name != m.name || !ms[0].Connected {
		t.Errorf("Masters with the token = %v, %v; want m1 connected", ms, err)
	}
	if _, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "wrong"); !errors.Is(err, needs.ErrUnauthorized) {
		t.Errorf("DialWS /v1/link with a wrong token = %v, want ErrUnauthorized", err)
	}
	if _, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", ""); !errors.Is(err, needs.ErrUnauthorized) {
		t.Errorf("DialWS /v1/link without a token = %v, want ErrUnauthorized", err)
	}

	// The client maps 401 to ErrUnauthorized, whatever the call.
	for _, bad := range []*lan.Client{{Addr: srv.Addr(), Token: "wrong"}, {Addr: srv.Addr()}} {
		if _, err := bad.Needs(t.Context()); !errors.Is(err, needs.ErrUnauthorized) {
			t.Errorf("Needs with token %q = %v, want ErrUnauthorized", bad.Token, err)
		}
		if _, err := bad.AddNeed(t.Context(), lan.NeedSpec{Name: "api", Command: []string{"x"}}); !errors.Is(err, needs.ErrUnauthorized) {
			t.Errorf("AddNeed with token %q = %v, want ErrUnauthorized", bad.Token, err)
		}
		if err := bad.RemoveNeed(t.Context(), "web"); !errors.Is(err, needs.ErrUnauthorized) {
			t.Errorf("RemoveNeed with token %q = %v, want ErrUnauthorized", bad.Token, err)
		}
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "api", Command: []string{"x"}, Instances: intp(0)}); err != nil {
		t.Errorf("AddNeed with the token: %v", err)
	}
	if names := needNames(t, srv, "Bearer "+token); !slices.Equal(names, []string{"api"}) {
		t.Errorf("needs = %v, want [api]", names)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	cfg := lan.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	srv, c := startServer(t, cfg)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"/bin/web", "--flag"},
		Instances: intp(3), Protocols: []needs.Protocol{needs.HTTP}, Env: map[string]string{"K": "v"}}); err != nil {
		t.Fatal(err)
	}
	// Without a master the instances stay pending and say why.
	waitFor(t, 5*time.Second, func() bool {
		st := getNeed(t, c, "web")
		if len(st.InstanceList) != 3 {
			return false
		}
		for _, in := range st.InstanceList {
			if in.State != needs.Pending || !strings.Contains(in.Reason, "no master connected") {
				return false
			}
		}
		return true
	})
	before := getNeed(t, c, "web")
	if before.Pending != 3 || before.Running != 0 || len(before.Reasons) != 3 {
		t.Errorf("status = pending %d running %d reasons %v, want 3/0/3 reasons", before.Pending, before.Running, before.Reasons)
	}
	reopen := func() *lan.Client {
		t.Helper()
		if err := srv.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		var c *lan.Client
		srv, c = startServer(t, cfg)
		return c
	}
	c = reopen()
	after := getNeed(t, c, "web")
	if after.Name != "web" || after.Instances != 3 || !slices.Equal(after.Command, before.Command) ||
		!slices.Equal(after.Protocols, []needs.Protocol{needs.HTTP}) || after.Env["K"] != "v" || !after.Created.Equal(before.Created) {
		t.Errorf("need after reopen = %+v, want %+v", after.Need, before.Need)
	}
	if len(after.InstanceList) != 3 {
		t.Fatalf("instances after reopen = %d, want 3", len(after.InstanceList))
	}
	for i, in := range after.InstanceList {
		if in.Name != needs.InstanceName("web", i) || in.Index != i || in.State != needs.Pending || in.Alloc != "" {
			t.Errorf("instance %d after reopen = %+v, want pending web.%d", i, in, i)
		}
	}

	st, err := c.Scale(t.Context(), "web", 1)
	if err != nil {
		t.Fatalf("Scale 1: %v", err)
	}
	if st.Instances != 1 || len(st.InstanceList) != 1 || st.InstanceList[0].Name != "web.0" {
		t.Errorf("after scale to 1: instances %d, list %v; want only web.0", st.Instances, st.InstanceList)
	}
	if got := getNeed(t, c, "web"); len(got.InstanceList) != 1 || instance(got, "web.0") == nil {
		t.Errorf("GET after scale to 1: %v", got.InstanceList)
	}
	c = reopen()
	if got := getNeed(t, c, "web"); got.Instances != 1 || len(got.InstanceList) != 1 || instance(got, "web.0") == nil {
		t.Errorf("after scale to 1 and reopen: instances %d list %v", got.Instances, got.InstanceList)
	}

	st, err = c.Scale(t.Context(), "web", 0)
	if err != nil {
		t.Fatalf("Scale 0: %v", err)
	}
	if st.Instances != 0 || len(st.InstanceList) != 0 {
		t.Errorf("after scale to 0: %+v", st)
	}
	st, err = c.Scale(t.Context(), "web", 2)
	if err != nil {
		t.Fatalf("Scale 2: %v", err)
	}
	if len(st.InstanceList) != 2 || st.InstanceList[1].State != needs.Pending {
		t.Errorf("after scale back to 2: %v", st.InstanceList)
	}

	if err := c.RemoveNeed(t.Context(), "web"); err != nil {
		t.Fatalf("RemoveNeed: %v", err)
	}
	if _, err := c.Need(t.Context(), "web"); !errors.Is(err, needs.ErrNotFound) {
		t.Errorf("Need after rm = %v, want ErrNotFound", err)
	}
	c = reopen()
	if _, err := c.Need(t.Context(), "web"); !errors.Is(err, needs.ErrNotFound) {
		t.Errorf("Need after rm and reopen = %v, want ErrNotFound", err)
	}
	if list, err := c.Needs(t.Context()); err != nil || len(list) != 0 {
		t.Errorf("Needs after rm and reopen = %v, %v; want none", list, err)
	}
	// The name is free again.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"x"}, Instances: intp(1)}); err != nil {
		t.Errorf("AddNeed after rm: %v", err)
	}
	if got := getNeed(t, c, "web"); len(got.InstanceList) != 1 || got.InstanceList[0].Restarts != 0 {
		t.Errorf("re-added need has stale instances: %v", got.InstanceList)
	}
}

func TestOpenSameDataDirTwice(t *testing.T) {
	dir := t.TempDir()
	startServer(t, lan.Config{DataDir: dir})
	start := time.Now()
	srv, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0", DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err == nil {
		srv.Close()
		t.Fatal("a second lanmanager opened a data directory in use")
	}
	if !strings.Contains(err.Error(), "another lanmanager") {
		t.Errorf("error %q does not explain the directory is in use", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second Open took %v to fail", d)
	}
	if _, err := lan.Open(t.Context(), lan.Config{Listen: "127.0.0.1:0"}); err == nil {
		t.Error("Open without a data directory succeeded")
	}
}

func TestEvents(t *testing.T) {
	srv, c := newTestServer(t, "")
	ch := subscribe(t, srv, c)
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"x"}, Instances: intp(2)}); err != nil {
		t.Fatal(err)
	}
	added := waitEvent(t, ch, 5*time.Second, "need.added web", func(e lan.Event) bool {
		return e.Kind == lan.EventNeedAdded && e.Need == "web"
	})
	ev := waitEvent(t, ch, 5*time.Second, "instance web.0", func(e lan.Event) bool {
		return e.Kind == lan.EventInstance && e.Instance != nil && e.Instance.Name == "web.0"
	})
	if ev.Need != "web" || ev.Instance.State != needs.Pending || ev.Seq <= added.Seq || ev.Time.IsZero() {
		t.Errorf("instance event = %+v (seq after %d), want pending web.0", ev, added.Seq)
	}
	if _, err := c.Scale(t.Context(), "web", 1); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, 5*time.Second, "need.scaled web", func(e lan.Event) bool {
		return e.Kind == lan.EventNeedScaled && e.Need == "web"
	})
	if err := c.RemoveNeed(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	// Both arrive; their order is not part of the contract.
	removed := map[string]bool{}
	waitEvent(t, ch, 5*time.Second, "instance.removed web.0 and need.removed web", func(e lan.Event) bool {
		switch {
		case e.Kind == lan.EventInstanceRemoved && e.Instance != nil && e.Instance.Name == "web.0":
			removed["instance"] = true
		case e.Kind == lan.EventNeedRemoved && e.Need == "web":
			removed["need"] = true
		}
		return len(removed) == 2
	})
}
