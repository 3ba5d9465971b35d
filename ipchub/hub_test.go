package ipchub_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"berth/ipchub"
)

func TestConnectRejects(t *testing.T) {
	_, base := newTestHub(t, ipchub.Options{Token: "secret"})
	for _, tt := range []struct {
		name      string
		id, v, tk string
		code      int
		body      string
	}{
		{"version 2", "abcde", "2.0.0", "secret", 409, ""},
		{"no version", "abcde", "", "secret", 409, ""},
		{"version 10", "abcde", "10.1", "secret", 409, ""},
		{"short id", "abcd", "1.0.0", "secret", 500, "Invalid IPC client id"},
		{"four runes in eight bytes", "éééé", "1.0.0", "secret", 500, "Invalid IPC client id"},
		{"bad token", "abcde", "1.0.0", "wrong", 403, ""},
		{"no token", "abcde", "1.0.0", "", 403, ""},
		{"undefined token", "abcde", "1.0.0", "undefined", 403, ""},
	} {
		q := url.Values{"id": {tt.id}, "v": {tt.v}, "t": {tt.tk}}
		code, body := get(t, base+"/db/connect?"+q.Encode())
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, body, tt.code, tt.body)
		}
	}
	dial(t, base, "db", "abcde", "secret")
	dial(t, base, "db", "ééééé", "secret")
	// A hub without a token accepts any t, "undefined" included.
	_, open := newTestHub(t, ipchub.Options{})
	dial(t, open, "db", "undef", "undefined")
	dial(t, open, "db", "empty", "")
}

func TestWelcomeAndNotices(t *testing.T) {
	hub, base := newTestHub(t, ipchub.Options{})
	c, _, err := websocketDial(t, connectURL(base, "db", "aaaaa", "x"))
	if err != nil {
		t.Fatal(err)
	}
	a := &client{id: "aaaaa", c: c}
	a.expect(t, `welcome:{"maxPayload":16384}`)
	other := dial(t, base, "other", "ccccc", "")
	b := dial(t, base, "db", "bbbbb", "")
	a.expect(t, "connect:bbbbb")
	b.barrier(t)
	other.barrier(t) // nothing leaked from group db
	g := hub.Snapshot()
	if len(g) != 2 || g[0].Name != "db" || len(g[0].Peers) != 2 || g[0].Peers[0].ID != "aaaaa" || g[0].Peers[1].ID != "bbbbb" || g[1].Name != "other" {
		t.Fatalf("snapshot %+v", g)
	}
	if p := g[0].Peers[0]; p.Remote == "" || p.Since.IsZero() {
		t.Errorf("peer %+v: want remote address and since", p)
	}
	b.c.Close(websocket.StatusNormalClosure, "")
	a.expect(t, "disconnect:bbbbb")
	other.barrier(t)
	if g := hub.Snapshot(); len(g) != 2 || len(g[0].Peers) != 1 {
		t.Fatalf("snapshot after leave %+v", g)
	}
}

func TestRouting(t *testing.T) {
	hub, base := newTestHub(t, ipchub.Options{})
	a := dial(t, base, "db", "aaaaa", "")
	b := dial(t, base, "db", "bbbbb", "")
	a.expect(t, "connect:bbbbb")
	c := dial(t, base, "db", "ccccc", "")
	a.expect(t, "connect:ccccc")
	b.expect(t, "connect:ccccc")
	x := dial(t, base, "other", "bbbbb", "") // same id, other group

	a.send(t, "to:bbbbb;hello")
	b.expect(t, "hello")
	c.barrier(t)
	x.barrier(t)

	a.send(t, "to:all;everyone")
	b.expect(t, "everyone")
	c.expect(t, "everyone")
	a.barrier(t)

	raw := "{\"a\":1}\xff\xfe not utf-8; to:bbbbb;"
	b.send(t, raw)
	a.expect(t, raw)
	c.expect(t, raw)
	b.barrier(t)
	x.barrier(t)

	before := hub.Stats().Drops
	a.send(t, "to:nobody;lost")
	a.send(t, "to:bbbbb")
	a.barrier(t)
	b.barrier(t)
	if d := hub.Stats().Drops - before; d != 2 {
		t.Errorf("drops %d, want 2 (unknown peer, to: without ;)", d)
	}
	if s := hub.Stats(); s.Messages == 0 || s.Bytes == 0 {
		t.Errorf("counters %+v", s)
	}
}

func TestSameIDReplacesOld(t *testing.T) {
	_, base := newTestHub(t, ipchub.Options{})
	a := dial(t, base, "db", "aaaaa", "")
	old := dial(t, base, "db", "xxxxx", "")
	a.expect(t, "connect:xxxxx")
	dial(t, base, "db", "xxxxx", "")
	a.expect(t, "disconnect:xxxxx", "connect:xxxxx")
	if ce := old.closed(t); !strings.Contains(ce.Reason, "replaced") {
		t.Errorf("old connection closed with %v, want a reason saying it was replaced", ce)
	}
	a.barrier(t) // the old connection's end sends no second disconnect
}

func TestOversizeFrameCloses(t *testing.T) {
	hub, base := newTestHub(t, ipchub.Options{MaxPayload: 100})
	c, _, err := websocketDial(t, connectURL(base, "db", "aaaaa", ""))
	if err != nil {
		t.Fatal(err)
	}
	a := &client{id: "aaaaa", c: c}
	a.expect(t, `welcome:{"maxPayload":100}`)
	b := dial(t, base, "db", "bbbbb", "")
	a.expect(t, "connect:bbbbb")
	a.send(t, strings.Repeat("x", 100))
	b.expect(t, strings.Repeat("x", 100))
	a.send(t, strings.Repeat("y", 101))
	ce := a.closed(t)
	if ce.Code != websocket.StatusMessageTooBig || !strings.Contains(ce.Reason, "maxPayload") {
		t.Errorf("closed with %v, want 1009 naming maxPayload", ce)
	}
	b.expect(t, "disconnect:aaaaa")
	if n := hub.Stats().Oversize; n != 1 {
		t.Errorf("oversize %d, want 1", n)
	}
}

func TestCloseEndsPeers(t *testing.T) {
	hub, base := newTestHub(t, ipchub.Options{})
	a := dial(t, base, "db", "aaaaa", "")
	b := dial(t, base, "db", "bbbbb", "")
	a.expect(t, "connect:bbbbb")
	done := make(chan struct{})
	go func() {
		defer close(done)
		hub.Close()
	}()
	for _, cl := range []*client{a, b} {
		if ce := cl.closed(t); ce.Code != websocket.StatusGoingAway {
			t.Errorf("%s closed with %v, want going away", cl.id, ce)
		}
	}
	<-done
	hub.Close() // idempotent
	if code, _ := get(t, base+"/db/connect?id=ccccc&v=1.0.0"); code != 503 {
		t.Errorf("connect after Close: %d, want 503", code)
	}
}
