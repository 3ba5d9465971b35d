package child

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// The IPC hub's frames, as the client reads and writes them (docs/ipc.md).
// A message from a peer arrives as its bare payload, with no prefix, so a
// payload that looks like a notice cannot be told from one: the client
// sends such payloads by the large-message path, whose body is never
// parsed (see needsLarge).
const (
	framePing        = "ping"
	framePong        = "pong"
	prefixWelcome    = "welcome:"
	prefixConnect    = "connect:"
	prefixDisconnect = "disconnect:"
	prefixGet        = "get:"
	prefixTo         = "to:"
	prefixToAll      = "to:all;"
)

// maxWelcomePayload caps the maxPayload a hub may announce: the client
// reads frames of up to that size, and queues QueueLen of them.
const maxWelcomePayload = 16 << 20

// hubFrameKind says what a frame from the hub is.
type hubFrameKind int

const (
	hubMessage hubFrameKind = iota // a peer's payload, the whole frame
	hubPong                        // the answer to our ping
	hubWelcome                     // the first frame; arg is the JSON
	hubJoin                        // connect:ID
	hubLeave                       // disconnect:ID
	hubLarge                       // get:MSGID
)

// hubFrame is a classified frame from the hub. arg aliases the input.
type hubFrame struct {
	kind hubFrameKind
	arg  []byte // the JSON, the peer id or the message id; the payload for hubMessage
}

// parseHubFrame classifies b, a text frame from the hub. A notice with an
// empty argument ("connect:") is taken as a message.
func parseHubFrame(b []byte) hubFrame {
	if string(b) == framePong {
		return hubFrame{kind: hubPong}
	}
	for _, p := range []struct {
		prefix string
		kind   hubFrameKind
	}{{prefixConnect, hubJoin}, {prefixDisconnect, hubLeave}, {prefixGet, hubLarge}, {prefixWelcome, hubWelcome}} {
		if rest, ok := bytes.CutPrefix(b, []byte(p.prefix)); ok && len(rest) > 0 {
			return hubFrame{kind: p.kind, arg: rest}
		}
	}
	return hubFrame{kind: hubMessage, arg: b}
}

// errWelcome is wrapped by parseWelcome's errors.
var errWelcome = errors.New("bad welcome frame")

// parseWelcome returns the maxPayload of a welcome frame's JSON,
// {"maxPayload":N}, capped at maxWelcomePayload. N must be a positive
// integer; other fields are ignored.
func parseWelcome(js []byte) (int, error) {
	var w struct {
		MaxPayload json.RawMessage `json:"maxPayload"`
	}
	if err := json.Unmarshal(js, &w); err != nil {
		return 0, fmt.Errorf("%w: %v", errWelcome, err)
	}
	if w.MaxPayload == nil {
		return 0, fmt.Errorf("%w: no maxPayload in %.100q", errWelcome, js)
	}
	n, err := strconv.ParseInt(string(w.MaxPayload), 10, 64)
	if err != nil && errors.Is(err, strconv.ErrRange) && w.MaxPayload[0] != '-' {
		n, err = maxWelcomePayload, nil
	}
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: maxPayload %.40s is not a positive integer", errWelcome, w.MaxPayload)
	}
	return int(min(n, maxWelcomePayload)), nil
}

// needsLarge reports whether payload must go by the large-message path
// even when it is small: its recipients would take it for a notice.
func needsLarge(payload []byte) bool {
	if string(payload) == framePong {
		return true
	}
	for _, p := range []string{prefixWelcome, prefixConnect, prefixDisconnect, prefixGet} {
		if bytes.HasPrefix(payload, []byte(p)) {
			return true
		}
	}
	return false
}

// toFrame returns the frame that sends payload to the peer id.
func toFrame(id string, payload []byte) []byte {
	f := make([]byte, 0, len(prefixTo)+len(id)+1+len(payload))
	f = append(f, prefixTo...)
	f = append(f, id...)
	f = append(f, ';')
	return append(f, payload...)
}

// broadcastFrame returns the frame that sends payload to every other peer:
// the payload itself, as AceBase sends it, unless the hub would read it as
// a ping or a to: frame, when it is prefixed with to:all;.
func broadcastFrame(payload []byte) []byte {
	if string(payload) != framePing && !bytes.HasPrefix(payload, []byte(prefixTo)) {
		return payload
	}
	f := make([]byte, 0, len(prefixToAll)+len(payload))
	f = append(f, prefixToAll...)
	return append(f, payload...)
}
