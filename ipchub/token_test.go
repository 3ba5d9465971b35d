package ipchub_test

import (
	"net/url"
	"strings"
	"testing"

	"berth/ipchub"
)

// TestChildToken: a child token admits its holder to its own group only,
// names it in the snapshot, and opens the large-message paths of that
// group only; a changed letter, another group or another hub token is
// refused.
func TestChildToken(t *testing.T) {
	hub, base := newTestHub(t, ipchub.Options{Token: "secret"})
	tok := ipchub.ChildToken("secret", "db", "web.2")
	if !strings.HasPrefix(tok, "c1.") || url.QueryEscape(tok) != tok {
		t.Fatalf("ChildToken = %q: want c1. and nothing a query string must escape", tok)
	}
	a := dial(t, base, "db", "peer-a", tok)
	dial(t, base, "db", "peer-b", "secret")
	var who []string
	for _, g := range hub.Snapshot() {
		for _, p := range g.Peers {
			who = append(who, g.Name+"/"+p.ID+"="+p.Who)
		}
	}
	if strings.Join(who, " ") != "db/peer-a=web.2 db/peer-b=" {
		t.Errorf("snapshot %v: want peer-a named web.2, peer-b no one", who)
	}

	flip := []byte(tok)
	flip[len(flip)-1] ^= 1
	for _, tt := range []struct{ name, group, tok string }{
		{"other group", "other", tok},
		{"other hub token", "db", ipchub.ChildToken("other-secret", "db", "web.2")},
		{"changed letter", "db", string(flip)},
		{"other name, same mac", "db", "c1.d2ViLjM." + tok[strings.LastIndex(tok, ".")+1:]},
		{"no mac", "db", "c1.d2ViLjI"},
		{"empty name", "db", "c1.." + tok[strings.LastIndex(tok, ".")+1:]},
		{"bad base64", "db", "c1.!!!.!!!"},
		{"prefix only", "db", "c1."},
	} {
		q := url.Values{"id": {"intruder"}, "v": {"1.0.0"}, "t": {tt.tok}}
		if code, _ := get(t, base+"/"+tt.group+"/connect?"+q.Encode()); code != 403 {
			t.Errorf("%s: connect answered %d, want 403", tt.name, code)
		}
	}
	// The large-message paths check the group too.
	if code, _ := post(t, sendURL(base, "other", "peer-a", tok), "x"); code != 401 {
		t.Errorf("send to another group with a child token: %d, want 401", code)
	}
	if code, body := post(t, sendURL(base, "db", "peer-a", tok), "to:peer-b;big"); code != 200 || body != "ok" {
		t.Errorf("send in its group: %d %q, want 200 ok", code, body)
	}
	_ = a

	for _, tt := range []struct{ token, group, who string }{
		{"", "db", "web.2"}, {"secret", "db", ""}, {"secret", "db", strings.Repeat("w", 257)},
	} {
		if got := ipchub.ChildToken(tt.token, tt.group, tt.who); got != "" {
			t.Errorf("ChildToken(%q, %q, %d bytes) = %q, want none", tt.token, tt.group, len(tt.who), got)
		}
	}
}
