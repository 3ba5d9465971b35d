package pipes_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"berth/pipes"
)

// TestGraceBounded: grace_ms above 24 h is refused with a wire error naming
// the field, in stop and child.stop alike; a huge value used to overflow
// time.Duration (9,300,000,000,000 ms × 1e6 ns wraps negative).
func TestGraceBounded(t *testing.T) {
	for _, tt := range []struct {
		grace int
		ok    bool
	}{
		{0, true}, {1, true}, {pipes.MaxGraceMS, true},
		{pipes.MaxGraceMS + 1, false}, {9300000000000, false}, {-1, false},
	} {
		for _, typ := range []string{pipes.TypeStop, pipes.TypeChildStop} {
			body := `{"alloc":"a1b2c3d4e5","grace_ms":` + strconv.Itoa(tt.grace) + `}`
			var into any = new(pipes.Stop)
			if typ == pipes.TypeChildStop {
				into = new(pipes.ChildStop)
			}
			err := (&pipes.Msg{V: 1, Type: typ, Body: []byte(body)}).Decode(into)
			if tt.ok {
				if err != nil {
					t.Errorf("%s grace_ms %d: %v, want accepted", typ, tt.grace, err)
				}
				continue
			}
			var pe *pipes.Error
			if !errors.As(err, &pe) || pe.Code != pipes.CodeInvalid || !strings.Contains(pe.Message, "grace_ms") {
				t.Errorf("%s grace_ms %d: %v, want an invalid error naming grace_ms", typ, tt.grace, err)
			}
		}
	}
}

// TestWelcomeStopGraceBounded: a welcome's stop_grace_ms is bounded as a
// stop's grace_ms is, and refused naming the field.
func TestWelcomeStopGraceBounded(t *testing.T) {
	for _, tt := range []struct {
		grace int
		ok    bool
	}{
		{0, true}, {5000, true}, {pipes.MaxGraceMS, true},
		{pipes.MaxGraceMS + 1, false}, {9300000000000, false}, {-1, false},
	} {
		body := `{"heartbeat_ms":1000,"ttl_ms":5000,"stop_grace_ms":` + strconv.Itoa(tt.grace) + `}`
		var w pipes.Welcome
		err := (&pipes.Msg{V: 1, Type: pipes.TypeWelcome, Body: []byte(body)}).Decode(&w)
		if tt.ok {
			if err != nil || w.StopGraceMS != tt.grace {
				t.Errorf("stop_grace_ms %d: %v (%+v), want accepted", tt.grace, err, w)
			}
			continue
		}
		var pe *pipes.Error
		if !errors.As(err, &pe) || pe.Code != pipes.CodeInvalid || !strings.Contains(pe.Message, "stop_grace_ms") {
			t.Errorf("stop_grace_ms %d: %v, want an invalid error naming stop_grace_ms", tt.grace, err)
		}
	}
}

// TestStartedAddress: a started report's address, when set, is an IP
// address others can dial or a host name of sane form.
func TestStartedAddress(t *testing.T) {
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"", true},
		{"10.0.0.5", true},
		{"::1", true},
		{"h", true},
		{"node-1.example.com", true},
		{"node-1.example.com.", true},
		{strings.Repeat("a", 63) + ".b", true},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"a b", false},
		{"-x.example.com", false},
		{"x-.example.com", false},
		{"x..example.com", false},
		{".x", false},
		{"x.example.com-", false},
		{"10.0.0.5:80", false},
		{"http://x", false},
		{"x/../y", false},
		{strings.Repeat("a", 64) + ".b", false},
		{strings.Repeat("a.", 127) + "ab", false}, // 256 bytes
	} {
		body := `{"alloc":"a1b2c3d4e5","instance":"web.0","pid":1,"address":` + strconv.Quote(tt.addr) + `}`
		var st pipes.Started
		err := (&pipes.Msg{V: 1, Type: pipes.TypeStarted, Body: []byte(body)}).Decode(&st)
		if tt.ok {
			if err != nil {
				t.Errorf("address %q: %v, want accepted", tt.addr, err)
			}
			continue
		}
		var pe *pipes.Error
		if !errors.As(err, &pe) || pe.Code != pipes.CodeInvalid || !strings.Contains(pe.Message, "address") {
			t.Errorf("address %q: %v, want an invalid error naming address", tt.addr, err)
		}
	}
}

// TestHelloDrivers: a hello's drivers are bounded and each is checked,
// with the error naming the entry.
func TestHelloDrivers(t *testing.T) {
	base := `{"id":"m-12345678","name":"m1","address":"10.0.0.1","drivers":`
	many := make([]string, pipes.MaxDrivers+1)
	for i := range many {
		many[i] = `{"name":"d` + strconv.Itoa(i) + `","available":true}`
	}
	for _, tt := range []struct {
		drivers string
		want    string // "" means accepted
	}{
		{`[{"name":"exec","builtin":true,"available":true},{"name":"rawexec","version":"1.0.0","available":true,"pid":7}]`, ""},
		{`[{"name":"bwrap","available":false,"reason":"bwrap not found"}]`, ""},
		{`[{"name":"Bad","available":true}]`, "drivers[0]"},
		{`[{"name":"ok","available":true},{"name":""}]`, "drivers[1]"},
		{`[{"name":"ok","version":"` + strings.Repeat("v", 129) + `"}]`, "version"},
		{`[{"name":"ok","reason":"` + strings.Repeat("r", 4097) + `"}]`, "reason"},
		{`[{"name":"ok","pid":-1}]`, "pid"},
		{`[` + strings.Join(many, ",") + `]`, "drivers"},
	} {
		err := (&pipes.Msg{V: 1, Type: pipes.TypeHello, Body: []byte(base + tt.drivers + `}`)}).Decode(new(pipes.Hello))
		if tt.want == "" {
			if err != nil {
				t.Errorf("%.80s: %v, want accepted", tt.drivers, err)
			}
			continue
		}
		var pe *pipes.Error
		if !errors.As(err, &pe) || pe.Code != pipes.CodeInvalid || !strings.Contains(pe.Message, tt.want) {
			t.Errorf("%.80s: %v, want an invalid error naming %s", tt.drivers, err, tt.want)
		}
	}
}
