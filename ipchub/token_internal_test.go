package ipchub

import (
	"strings"
	"testing"
)

// FuzzAdmit: whatever t a client sends, admit never panics, and admits
// only the hub's token or a child token made for that group and name.
func FuzzAdmit(f *testing.F) {
	f.Add("db", "secret")
	f.Add("db", ChildToken("secret", "db", "web.2"))
	f.Add("other", ChildToken("secret", "db", "web.2"))
	f.Add("db", "c1..")
	f.Add("db", "c1."+strings.Repeat("A", 400)+".x")
	s := NewServer(Options{Token: "secret"})
	f.Fuzz(func(t *testing.T, group, tok string) {
		who, ok := s.admit(group, tok)
		if !ok {
			return
		}
		if tok == "secret" {
			if who != "" {
				t.Fatalf("the hub token named %q", who)
			}
			return
		}
		if who == "" || ChildToken("secret", group, who) != tok {
			t.Fatalf("admitted %q to %q as %q, not a child token of it", tok, group, who)
		}
	})
}
