package ipchub_test

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/ipchub"
)

// clock is a settable clock for large-message expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func sendURL(base, group, id, token string) string {
	return base + "/" + group + "/send?" + url.Values{"id": {id}, "t": {token}}.Encode()
}

func receiveURL(base, group, id, msg, token string) string {
	return base + "/" + group + "/receive?" + url.Values{"id": {id}, "msg": {msg}, "t": {token}}.Encode()
}

// msgID reads a get:MSGID frame.
func msgID(t *testing.T, cl *client) string {
	t.Helper()
	id, ok := strings.CutPrefix(cl.read(t), "get:")
	if !ok || id == "" {
		t.Fatalf("%s: want get:MSGID", cl.id)
	}
	return id
}

func TestLargeMessages(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	hub, base := newTestHub(t, ipchub.Options{Token: "tk", Now: clk.Now, MaxLarge: 2})
	a := dial(t, base, "db", "aaaaa", "tk")
	b := dial(t, base, "db", "bbbbb", "tk")
	a.expect(t, "connect:bbbbb")
	c := dial(t, base, "db", "ccccc", "tk")
	a.expect(t, "connect:ccccc")
	b.expect(t, "connect:ccccc")
	x := dial(t, base, "other", "xxxxx", "tk")
	big := strings.Repeat("é", 20000) + "\xff"

	// To one peer: fetched once.
	if code, body := post(t, sendURL(base, "db", "aaaaa", "tk"), "to:bbbbb;"+big); code != 200 || body != "ok" {
		t.Fatalf("send: %d %q", code, body)
	}
	id := msgID(t, b)
	c.barrier(t)
	x.barrier(t)
	if code, _ := get(t, receiveURL(base, "db", "ccccc", id, "tk")); code != 404 {
		t.Errorf("fetch by a peer it is not for: %d, want 404", code)
	}
	if code, _ := get(t, receiveURL(base, "db", "bbbbb", id, "bad")); code != 401 {
		t.Errorf("bad token: %d, want 401", code)
	}
	if code, _ := get(t, receiveURL(base, "other", "bbbbb", id, "tk")); code != 401 {
		t.Errorf("unknown id in group: %d, want 401", code)
	}
	if code, body := get(t, receiveURL(base, "db", "bbbbb", id, "tk")); code != 200 || body != big {
		t.Fatalf("receive: %d, %d bytes, want the payload byte for byte", code, len(body))
	}
	if code, _ := get(t, receiveURL(base, "db", "bbbbb", id, "tk")); code != 404 {
		t.Errorf("second fetch: %d, want 404", code)
	}

	// Broadcast: each recipient fetches once, then it is gone.
	if code, _ := post(t, sendURL(base, "db", "ccccc", "tk"), big); code != 200 {
		t.Fatalf("broadcast send: %d", code)
	}
	ida, idb := msgID(t, a), msgID(t, b)
	if ida != idb {
		t.Errorf("one message, two ids: %s %s", ida, idb)
	}
	for _, p := range []string{"aaaaa", "bbbbb"} {
		if code, body := get(t, receiveURL(base, "db", p, ida, "tk")); code != 200 || body != big {
			t.Errorf("%s receive: %d", p, code)
		}
	}
	if code, _ := get(t, receiveURL(base, "db", "aaaaa", ida, "tk")); code != 404 {
		t.Errorf("after every recipient fetched: %d, want 404", code)
	}

	// Expiry after LargeTTL, and the bound on waiting messages.
	post(t, sendURL(base, "db", "aaaaa", "tk"), "to:all;one")
	idOld := msgID(t, b)
	msgID(t, c)
	post(t, sendURL(base, "db", "aaaaa", "tk"), "to:bbbbb;two")
	msgID(t, b)
	if code, _ := post(t, sendURL(base, "db", "aaaaa", "tk"), "to:bbbbb;three"); code != 503 {
		t.Errorf("third waiting message with MaxLarge 2: %d, want 503", code)
	}
	clk.Add(ipchub.DefaultLargeTTL)
	if code, _ := get(t, receiveURL(base, "db", "bbbbb", idOld, "tk")); code != 404 {
		t.Errorf("after %s: %d, want 404", ipchub.DefaultLargeTTL, code)
	}
	if code, _ := post(t, sendURL(base, "db", "aaaaa", "tk"), "to:bbbbb;four"); code != 200 {
		t.Errorf("send after expiry freed the store: %d", code)
	}
	msgID(t, b)

	// Sender checks.
	if code, _ := post(t, sendURL(base, "db", "aaaaa", "bad"), "x"); code != 401 {
		t.Errorf("send with bad token: %d, want 401", code)
	}
	if code, _ := post(t, sendURL(base, "db", "zzzzz", "tk"), "x"); code != 401 {
		t.Errorf("send from unknown id: %d, want 401", code)
	}
	if hub.Stats().Messages == 0 {
		t.Error("no messages counted")
	}
}

func TestLargeBodyLimit(t *testing.T) {
	_, base := newTestHub(t, ipchub.Options{MaxLargeBody: 1000})
	dial(t, base, "db", "aaaaa", "")
	b := dial(t, base, "db", "bbbbb", "")
	if code, _ := post(t, sendURL(base, "db", "aaaaa", ""), strings.Repeat("x", 1001)); code != 413 {
		t.Errorf("body over MaxLargeBody: %d, want 413", code)
	}
	if code, _ := post(t, sendURL(base, "db", "aaaaa", ""), strings.Repeat("x", 1000)); code != 200 {
		t.Errorf("body of MaxLargeBody: %d, want 200", code)
	}
	msgID(t, b)
}
