package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Message is a client's text message as the gateway reads it.
type Message struct {
	// Name is the route, /{name} on the instance ("name", else "action");
	// a message without one goes to / (a text that is not JSON, too).
	Name string
	// Query and Params become the query string of the instance's request.
	Query, Params map[string]string
	// Payload is the request body: the JSON of "payload", or, for a text
	// that is not a JSON object, the text itself (Raw).
	Payload json.RawMessage
	Raw     bool
	// Headers are the message's headers, names in lower case; message-id
	// among them.
	Headers map[string]string
}

// MessageID is the message's message-id header, or "".
func (m *Message) MessageID() string { return m.Headers["message-id"] }

// nameRE is what a route name may be: one path segment of URL-safe
// characters.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// Limits of a message's maps.
const (
	maxFields    = 64
	maxHeaderLen = 4096
)

// ParseMessage reads a client's text message. A text that is not a JSON
// object becomes the raw payload of a message without a name; a JSON
// object with fields of the wrong types is an error naming the field (the
// message is still returned, for the headers it could read).
func ParseMessage(text []byte) (*Message, error) {
	m := &Message{Headers: map[string]string{}}
	trimmed := bytes.TrimSpace(text)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		m.Payload, m.Raw = append(json.RawMessage(nil), text...), true
		return m, nil
	}
	var raw struct {
		Name    json.RawMessage `json:"name"`
		Action  json.RawMessage `json:"action"`
		Params  json.RawMessage `json:"params"`
		Query   json.RawMessage `json:"query"`
		Payload json.RawMessage `json:"payload"`
		Headers json.RawMessage `json:"headers"`
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return m, fmt.Errorf("message: %v", err)
	}
	var err error
	if m.Headers, err = stringMap("headers", raw.Headers, true); err != nil {
		m.Headers = map[string]string{}
		return m, err
	}
	for _, f := range []struct {
		field string
		raw   json.RawMessage
	}{{"name", raw.Name}, {"action", raw.Action}} {
		if len(f.raw) == 0 || string(f.raw) == "null" || m.Name != "" {
			continue
		}
		if err := json.Unmarshal(f.raw, &m.Name); err != nil {
			return m, fmt.Errorf("%s: want a string", f.field)
		}
	}
	if m.Params, err = stringMap("params", raw.Params, false); err != nil {
		return m, err
	}
	if m.Query, err = stringMap("query", raw.Query, false); err != nil {
		return m, err
	}
	if len(raw.Payload) > 0 && string(raw.Payload) != "null" {
		m.Payload = raw.Payload
	}
	if m.Name != "" && !nameRE.MatchString(m.Name) {
		return m, fmt.Errorf("name %q: want 1-128 of A-Z, a-z, 0-9, '.', '_', '~' and '-'", m.Name)
	}
	return m, nil
}

// stringMap reads an object of scalars as strings (numbers and booleans
// as written); lower lower-cases the keys.
func stringMap(field string, raw json.RawMessage, lower bool) (map[string]string, error) {
	out := map[string]string{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: want an object", field)
	}
	if len(obj) > maxFields {
		return nil, fmt.Errorf("%s: %d entries, more than %d", field, len(obj), maxFields)
	}
	for k, v := range obj {
		var s string
		switch {
		case len(v) > 0 && v[0] == '"':
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("%s.%s: %v", field, k, err)
			}
		case string(v) == "null":
			continue
		case len(v) > 0 && (v[0] == '{' || v[0] == '['):
			return nil, fmt.Errorf("%s.%s: want a string, number or boolean", field, k)
		default:
			s = string(v)
		}
		if len(k) == 0 || len(k) > maxHeaderLen || len(s) > maxHeaderLen || strings.ContainsAny(k+s, "\r\n\x00") {
			return nil, fmt.Errorf("%s.%s: empty, longer than %d bytes, or holding a line break or NUL", field, k, maxHeaderLen)
		}
		if lower {
			k = strings.ToLower(k)
		}
		out[k] = s
	}
	return out, nil
}

// queryString is the instance request's query: query then params, sorted.
func (m *Message) queryString() string {
	v := url.Values{}
	for _, src := range []map[string]string{m.Query, m.Params} {
		keys := make([]string, 0, len(src))
		for k := range src {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v.Add(k, src[k])
		}
	}
	return v.Encode()
}

// Reply is what the gateway sends a client for a message: an instance's
// answer, or the gateway's own error.
type Reply struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       json.RawMessage   `json:"body,omitempty"`
}

// bodyJSON is b as the JSON of a reply's body: itself if it is JSON, else
// a JSON string of it.
func bodyJSON(b []byte) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if json.Valid(b) {
		return append(json.RawMessage(nil), b...)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// errorReply is the gateway's own answer to a message, message-id kept.
func errorReply(code int, messageID, msg string) *Reply {
	r := &Reply{StatusCode: code, Headers: map[string]string{}}
	if messageID != "" {
		r.Headers["message-id"] = messageID
	}
	b, _ := json.Marshal(map[string]string{"error": msg})
	r.Body = b
	return r
}
