package pipes_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
	"time"

	"berth/needs"
	"berth/pipes"
)

// seedFrames returns encoded frames of several message types.
func seedFrames(tb testing.TB) [][]byte {
	tb.Helper()
	need := needs.Need{Name: "web", Command: []string{"srv", "-port", "${PORT}"}, Instances: 2, Protocols: []needs.Protocol{needs.HTTP}}
	msgs := []*pipes.Msg{
		mustNew(tb, pipes.TypeHello, 1, pipes.Hello{ID: "m-12345678", Name: "m1", Address: "10.0.0.1", Ranges: map[needs.Protocol][2]int{needs.HTTP: {16000, 16999}},
			Drivers: []pipes.DriverInfo{{Name: "exec", Builtin: true, Available: true}, {Name: "bwrap", Reason: "bwrap not found", PID: 7}}}),
		mustNew(tb, pipes.TypeDrivers, 2, []pipes.DriverInfo{{Name: "rawexec", Version: "1.0.0", Available: true, Signals: true}}),
		mustNew(tb, pipes.TypeOffer, 0, pipes.Offer{Instance: "web.0", Round: 3, Need: need}),
		mustNew(tb, pipes.TypeGrant, 0, pipes.Grant{Instance: "web.0", Alloc: "a1b2c3d4e5", Need: need}),
		mustNew(tb, pipes.TypeGrant, 0, pipes.Grant{Instance: "hog.0", Alloc: "b1b2c3d4e5", Need: needs.Need{Name: "hog", Command: []string{"x"}, Instances: 1,
			Limits: &needs.Limits{Memory: 256 << 20, CPUs: 0.5, PIDs: 200}}}),
		mustNew(tb, pipes.TypeExited, 0, pipes.Exited{Alloc: "b1b2c3d4e5", Instance: "hog.0", Code: -1, Signal: "SIGKILL", OOMKilled: true, MemoryLimit: 256 << 20}),
		mustNew(tb, pipes.TypeStarted, 2, pipes.Started{Alloc: "a1b2c3d4e5", Instance: "web.0", PID: 7, Ports: map[needs.Protocol]int{needs.HTTP: 16000}, StartedAt: time.Unix(1700000000, 0).UTC()}),
		mustNew(tb, pipes.TypeServices, 0, pipes.Services{Rev: 4, Full: true, Parts: 1, Instances: []pipes.Service{
			{Need: "web", Instance: "web.0", Alloc: "a1b2c3d4e5", Master: "m1", Address: "10.0.0.1", Ports: map[needs.Protocol]int{needs.HTTP: 16000}}}}),
		mustNew(tb, pipes.TypeServices, 0, pipes.Services{Rev: 5, Base: 4, Part: 1, Parts: 2, Removed: []string{"web.1", "db.0"}}),
		mustNew(tb, pipes.TypeMesh, 0, pipes.Mesh{Needs: []pipes.MeshNeed{{Name: "web", Ingress: []needs.Ingress{{Protocol: needs.HTTP, Port: 8080}}, Balance: "least-conn"}},
			Targets: []pipes.MeshTarget{{Name: "db", Balance: "resource", Weights: "cpu=1"}}}),
		mustNew(tb, pipes.TypeIngress, 0, pipes.IngressReport{Ports: []pipes.IngressPort{{Need: "web", Protocol: needs.HTTP, Port: 8080, Open: true},
			{Need: "db", Protocol: needs.TCP, Port: 5432, Error: "listen tcp 10.0.0.1:5432: bind: address already in use"}}}),
		mustNew(tb, pipes.TypeStats, 0, pipes.Stats{PID: 7, CPUPercent: 1.5, RSS: 1 << 20}),
		mustNew(tb, pipes.TypeChildStop, 9, pipes.ChildStop{Reason: "<scale down>", GraceMS: 100}),
		mustNew(tb, pipes.TypeMeshReady, 0, pipes.MeshState{Upstreams: []pipes.UpstreamState{{Name: "db", Need: "postgres", Protocol: needs.TCP,
			Address: "127.0.0.1:41234", Targets: []pipes.Peer{{Instance: "postgres.0", Master: "m2", Address: "10.0.0.2", Ports: map[needs.Protocol]int{needs.TCP: 15000}}}}},
			Peers: []pipes.Peer{{Instance: "web.0", Master: "m1", Address: "10.0.0.1", Ports: map[needs.Protocol]int{needs.HTTP: 16000}}}}),
		mustNew(tb, pipes.TypeMeshChange, 0, pipes.MeshState{Upstreams: []pipes.UpstreamState{{Name: "db", Need: "postgres", Protocol: needs.TCP,
			Address: "127.0.0.1:41234", Targets: []pipes.Peer{}, Error: "need postgres has no running instance"}}}),
		mustNew(tb, pipes.TypeMeshError, 0, pipes.MeshError{Upstream: "db", Need: "postgres", Message: "no running instance"}),
		mustNew(tb, pipes.TypeMeshClose, 0, pipes.MeshClose{Reason: "scaled down"}),
		{V: 1, Type: pipes.TypePing, ID: 5},
		{V: 1, Type: pipes.TypeError, ID: 2, Error: &pipes.Error{Code: pipes.CodeStale, Message: "stale allocation"}},
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := pipes.Encode(nil, m)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// decodeAll decodes frames from r until the first error.
func decodeAll(r io.Reader) ([]*pipes.Msg, error) {
	var out []*pipes.Msg
	for {
		m, err := pipes.Decode(r, 0)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

// canonBody is body as json.Marshal re-encodes a json.RawMessage: compact,
// with <, >, & and U+2028/U+2029 escaped.
func canonBody(tb testing.TB, body []byte) []byte {
	tb.Helper()
	if body == nil {
		return nil
	}
	var c, e bytes.Buffer
	if err := json.Compact(&c, body); err != nil {
		tb.Fatalf("decoded body %q is not JSON: %v", body, err)
	}
	json.HTMLEscape(&e, c.Bytes())
	return e.Bytes()
}

func FuzzDecode(f *testing.F) {
	frames := seedFrames(f)
	for i, b := range frames {
		f.Add(b, uint16(len(b)/2))
		f.Add(b[:len(b)-1], uint16(i))
	}
	f.Add(bytes.Join(frames, nil), uint16(37))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(2))
	f.Add(frame(`{"v":1,"type":"x"}}`), uint16(0))
	f.Add(frame(`{"v":1,"type":"x","body":{"a":"<&>\u2028"}}`), uint16(9))

	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		k := int(split) % (len(data) + 1)
		whole, wholeErr := decodeAll(bytes.NewReader(data))
		for name, r := range map[string]io.Reader{
			"split":     io.MultiReader(bytes.NewReader(data[:k]), bytes.NewReader(data[k:])),
			"one byte":  iotest.OneByteReader(bytes.NewReader(data)),
			"half data": iotest.HalfReader(bytes.NewReader(data)),
		} {
			got, err := decodeAll(r)
			if !reflect.DeepEqual(got, whole) || err.Error() != wholeErr.Error() {
				t.Fatalf("%s reader: %d messages, %v; whole: %d messages, %v", name, len(got), err, len(whole), wholeErr)
			}
		}
		for _, m := range whole {
			checkReencode(t, m)
		}
	})
}

// checkReencode checks that a decoded message encodes and decodes to an
// equal message, and that the second encoding is a fixed point.
func checkReencode(t *testing.T, m *pipes.Msg) {
	t.Helper()
	b, err := pipes.Encode(nil, m)
	if errors.Is(err, pipes.ErrFrameTooLarge) {
		return // escaping can grow a frame that was near the limit
	}
	if err != nil {
		t.Fatalf("re-encode %+v: %v", m, err)
	}
	m2, err := pipes.Decode(bytes.NewReader(b), 0)
	if err != nil {
		t.Fatalf("decode re-encoded %q: %v", b, err)
	}
	if m2.V != m.V || m2.Type != m.Type || m2.ID != m.ID || !reflect.DeepEqual(m2.Error, m.Error) {
		t.Fatalf("round trip changed the envelope:\n got %+v\nwant %+v", m2, m)
	}
	if !bytes.Equal(canonBody(t, m2.Body), canonBody(t, m.Body)) {
		t.Fatalf("round trip changed the body:\n got %q\nwant %q", m2.Body, m.Body)
	}
	b2, err := pipes.Encode(nil, m2)
	if err != nil || !bytes.Equal(b2, b) {
		t.Fatalf("second encoding differs: %q, %v\nfirst: %q", b2, err, b)
	}
}

// bodyTypes makes a fresh value of every body type.
var bodyTypes = map[string]func() any{
	pipes.TypeHello:      func() any { return new(pipes.Hello) },
	pipes.TypeWelcome:    func() any { return new(pipes.Welcome) },
	pipes.TypeOffer:      func() any { return new(pipes.Offer) },
	pipes.TypeBid:        func() any { return new(pipes.Bid) },
	pipes.TypeGrant:      func() any { return new(pipes.Grant) },
	pipes.TypeStarted:    func() any { return new(pipes.Started) },
	pipes.TypeReady:      func() any { return new(pipes.AllocRef) },
	pipes.TypeStop:       func() any { return new(pipes.Stop) },
	pipes.TypeExited:     func() any { return new(pipes.Exited) },
	pipes.TypeStats:      func() any { return new(pipes.Stats) },
	pipes.TypeChildHello: func() any { return new(pipes.ChildHello) },
	pipes.TypeChildStop:  func() any { return new(pipes.ChildStop) },
	pipes.TypePS:         func() any { return new([]pipes.ChildInfo) },
	pipes.TypeDrivers:    func() any { return new([]pipes.DriverInfo) },
	pipes.TypeLogs:       func() any { return new(pipes.Logs) },
	pipes.TypeLogData:    func() any { return new(pipes.LogData) },
	pipes.TypeServices:   func() any { return new(pipes.Services) },
	pipes.TypeMesh:       func() any { return new(pipes.Mesh) },
	pipes.TypeIngress:    func() any { return new(pipes.IngressReport) },
	pipes.TypeLoads:      func() any { return new(pipes.Loads) },
	pipes.TypeMeshReady:  func() any { return new(pipes.MeshState) },
	pipes.TypeMeshChange: func() any { return new(pipes.MeshState) },
	pipes.TypeMeshError:  func() any { return new(pipes.MeshError) },
	pipes.TypeMeshClose:  func() any { return new(pipes.MeshClose) },
}

func FuzzUnmarshalBodies(f *testing.F) {
	for _, b := range seedFrames(f) {
		m, err := pipes.Decode(bytes.NewReader(b), 0)
		if err != nil {
			f.Fatal(err)
		}
		if m.Body != nil {
			f.Add([]byte(m.Body))
		}
	}
	f.Add([]byte(`{"alloc":"a1b2c3d4e5","instance":"web.0","code":-1,"signal":"SIGKILL"}`))
	f.Add([]byte(`{"alloc":"a1b2c3d4e5"}`))
	f.Add([]byte(`{"alloc":"a1b2c3d4e5","code":-1,"oom_killed":true,"memory_limit":"64M"}`))
	f.Add([]byte(`{"instance":"a.0","round":1,"need":{"name":"a","command":["x"],"instances":1,"limits":{"memory":"1G","cpus":0.25,"pids":9}}}`))
	f.Add([]byte(`{"instance":"web.1","round":1,"ok":false,"reason":"full"}`))
	f.Add([]byte(`[{"instance":"web.1","pid":3,"stats":{"pid":3}}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"instance":"web.0","tail":10,"follow":true}`))
	f.Add([]byte(`{"data":"aGVsbG8K","eof":true}`))
	f.Add([]byte(`{"heartbeat_ms":1000,"ttl_ms":5000}`))
	f.Add([]byte(`{"loads":[{"instance":"web.0","alloc":"a1b2c3d4e5","cpu_percent":87.5,"heap_used":10,"heap_total":20,"age_ms":300}]}`))
	f.Add([]byte(`{"upstreams":[{"name":"db","need":"pg","protocol":"tcp","address":"127.0.0.1:9","targets":[{"instance":"pg.0","master":"m1","address":"h","ports":{"tcp":5}}]}],"peers":null}`))
	f.Add([]byte(`[{"instance":"web.0","master":"m1","address":"10.0.0.1","ports":{"http":80}}]`))
	f.Add([]byte(`{"rev":9,"base":8,"part":0,"parts":1,"removed":["web.2"],"instances":[{"need":"web","instance":"web.3","alloc":"a1b2c3d4e5","master":"m2","address":"host-1.lan","ports":{"http":80}}]}`))
	f.Add([]byte(`{"name":"web","command":["x"],"instances":1,"protocols":["http"],"restart":{"delay":"1s","factor":1.5,"local_attempts":2},"socket_activation":true}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		for typ, newBody := range bodyTypes {
			v := newBody()
			err := (&pipes.Msg{V: 1, Type: "x", Body: data}).Decode(v)
			if err != nil {
				if pe, ok := errors.AsType[*pipes.Error](err); !ok || pe.Code != pipes.CodeInvalid {
					t.Fatalf("%s: Decode error %v (%T), want an invalid *pipes.Error", typ, err, err)
				}
				continue
			}
			// A body that was accepted once is accepted again after encoding.
			m, err := pipes.New("x", v)
			if err != nil {
				t.Fatalf("%s: re-encode %+v: %v", typ, v, err)
			}
			if err := m.Decode(newBody()); err != nil {
				t.Fatalf("%s: decode re-encoded %s: %v", typ, m.Body, err)
			}
		}
	})
}
