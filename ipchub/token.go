package ipchub

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
)

// Child tokens let a hub with a token admit a process to one group without
// giving it the hub's token: ChildToken(token, group, who) is accepted, by
// a hub whose Options.Token is token, on the paths of group only, and the
// peer shows who (berth puts an instance's name there) in Snapshot. A
// child token is "c1.", who in unpadded base64url, ".", then the first 18
// bytes of HMAC-SHA256(token, "berth-ipc\x00" group "\x00" who) in unpadded
// base64url: URL-safe as it is, since AceBase puts its token in the query
// string unescaped.
const childPrefix = "c1."

// maxWho bounds who in a child token.
const maxWho = 256

// ChildToken returns the token that admits who to group on a hub whose
// token is token. It returns "" when token is empty (such a hub admits
// anyone) or who is empty or longer than 256 bytes.
func ChildToken(token, group, who string) string {
	if token == "" || who == "" || len(who) > maxWho {
		return ""
	}
	return childPrefix + base64.RawURLEncoding.EncodeToString([]byte(who)) + "." + base64.RawURLEncoding.EncodeToString(childMAC(token, group, who))
}

func childMAC(token, group, who string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("berth-ipc\x00" + group + "\x00" + who))
	return m.Sum(nil)[:18]
}

// admit reports whether t admits a peer to group and, for a child token,
// whom it names. A hub without a token admits any t, and names no one.
func (s *Server) admit(group, t string) (who string, ok bool) {
	tok := s.opts.Token
	if tok == "" {
		return "", true
	}
	if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
		return "", true
	}
	rest, found := strings.CutPrefix(t, childPrefix)
	if !found {
		return "", false
	}
	w64, m64, found := strings.Cut(rest, ".")
	if !found || len(w64) > base64.RawURLEncoding.EncodedLen(maxWho) {
		return "", false
	}
	// Only the canonical form: Go's base64 decoders skip \r and \n, so a
	// token with a line break in it would decode as the token without.
	w, err := base64.RawURLEncoding.Strict().DecodeString(w64)
	if err != nil || len(w) == 0 || base64.RawURLEncoding.EncodeToString(w) != w64 {
		return "", false
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(m64)
	if err != nil || base64.RawURLEncoding.EncodeToString(mac) != m64 || !hmac.Equal(mac, childMAC(tok, group, string(w))) {
		return "", false
	}
	return string(w), true
}
