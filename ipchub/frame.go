package ipchub

import "bytes"

// kind says what the hub does with a frame a peer sent.
type kind int

const (
	kindBroadcast kind = iota // to every other peer of the group
	kindPing                  // answered with pong
	kindTo                    // to one peer
	kindAll                   // to every other peer, individually
	kindMalformed             // "to:" without ";" or with an empty id: dropped
)

// frame is a parsed client frame. payload aliases the input.
type frame struct {
	kind    kind
	to      string
	payload []byte
}

var (
	prefixTo = []byte("to:")
	ping     = []byte("ping")
)

// parseFrame classifies b, a text frame from a peer, or the body of a
// POST to /send. It never copies the payload.
func parseFrame(b []byte) frame {
	if bytes.Equal(b, ping) {
		return frame{kind: kindPing}
	}
	rest, ok := bytes.CutPrefix(b, prefixTo)
	if !ok {
		return frame{kind: kindBroadcast, payload: b}
	}
	to, payload, ok := bytes.Cut(rest, []byte{';'})
	if !ok || len(to) == 0 {
		return frame{kind: kindMalformed}
	}
	if string(to) == "all" {
		return frame{kind: kindAll, payload: payload}
	}
	return frame{kind: kindTo, to: string(to), payload: payload}
}
