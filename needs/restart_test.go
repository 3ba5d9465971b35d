package needs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"berth/needs"
)

func TestRestartPolicyValidate(t *testing.T) {
	d := func(s string) needs.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return needs.Duration(v)
	}
	tests := []struct {
		name      string
		p         *needs.RestartPolicy
		wantField string // "" means valid
	}{
		{"nil", nil, ""},
		{"zero", &needs.RestartPolicy{}, ""},
		{"full", &needs.RestartPolicy{LocalAttempts: 3, Delay: d("1s"), MaxDelay: d("1m"), Factor: 1.5, ResetAfter: d("10m")}, ""},
		{"max local attempts", &needs.RestartPolicy{LocalAttempts: needs.MaxLocalAttempts}, ""},
		{"factor 1", &needs.RestartPolicy{Factor: 1}, ""},
		{"factor 10", &needs.RestartPolicy{Factor: 10}, ""},
		{"max delay equals delay", &needs.RestartPolicy{Delay: d("2s"), MaxDelay: d("2s")}, ""},
		{"delay above the default cap", &needs.RestartPolicy{Delay: d("1m")}, ""},
		{"24h", &needs.RestartPolicy{Delay: d("24h"), MaxDelay: d("24h"), ResetAfter: d("24h")}, ""},
		{"negative local attempts", &needs.RestartPolicy{LocalAttempts: -1}, "restart.local_attempts"},
		{"too many local attempts", &needs.RestartPolicy{LocalAttempts: needs.MaxLocalAttempts + 1}, "restart.local_attempts"},
		{"negative delay", &needs.RestartPolicy{Delay: d("-1s")}, "restart.delay"},
		{"delay over 24h", &needs.RestartPolicy{Delay: d("25h")}, "restart.delay"},
		{"negative max delay", &needs.RestartPolicy{MaxDelay: d("-1ms")}, "restart.max_delay"},
		{"max delay over 24h", &needs.RestartPolicy{MaxDelay: d("24h1ns")}, "restart.max_delay"},
		{"negative reset after", &needs.RestartPolicy{ResetAfter: d("-1s")}, "restart.reset_after"},
		{"reset after over 24h", &needs.RestartPolicy{ResetAfter: d("48h")}, "restart.reset_after"},
		{"factor below 1", &needs.RestartPolicy{Factor: 0.5}, "restart.factor"},
		{"negative factor", &needs.RestartPolicy{Factor: -2}, "restart.factor"},
		{"factor above 10", &needs.RestartPolicy{Factor: 10.5}, "restart.factor"},
		{"factor NaN", &needs.RestartPolicy{Factor: math.NaN()}, "restart.factor"},
		{"factor +Inf", &needs.RestartPolicy{Factor: math.Inf(1)}, "restart.factor"},
		{"max delay below delay", &needs.RestartPolicy{Delay: d("5s"), MaxDelay: d("1s")}, "restart.max_delay"},
		{"max delay below the default delay", &needs.RestartPolicy{MaxDelay: d("50ms")}, "restart.max_delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.p, err)
				}
				// A need carrying the policy validates too.
				n := needs.Need{Name: "a", Command: []string{"x"}, Restart: tt.p}
				if err := n.Validate(); err != nil {
					t.Fatalf("Need.Validate with %+v = %v", tt.p, err)
				}
				return
			}
			var fe *needs.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !errors.Is(err, needs.ErrInvalid) {
				t.Fatalf("Validate(%+v) = %v, want a FieldError on %q", tt.p, err, tt.wantField)
			}
			n := needs.Need{Name: "a", Command: []string{"x"}, Restart: tt.p}
			if err := n.Validate(); !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Errorf("Need.Validate = %v, want the policy's error on %q", err, tt.wantField)
			}
		})
	}
}

func TestSocketActivationNeedsAProtocol(t *testing.T) {
	n := needs.Need{Name: "a", Command: []string{"x"}, SocketActivation: true}
	var fe *needs.FieldError
	if err := n.Validate(); !errors.As(err, &fe) || fe.Field != "socket_activation" {
		t.Errorf("Validate without protocols = %v, want a FieldError on socket_activation", err)
	}
	n.Protocols = []needs.Protocol{needs.HTTP}
	if err := n.Validate(); err != nil {
		t.Errorf("Validate with a protocol = %v", err)
	}
}

func TestRestartPolicyEffective(t *testing.T) {
	def := needs.RestartPolicy{Delay: needs.Duration(needs.BackoffMin), MaxDelay: needs.Duration(needs.BackoffMax),
		Factor: 2, ResetAfter: needs.Duration(needs.StableAfter)}
	tests := []struct {
		name string
		p    *needs.RestartPolicy
		want needs.RestartPolicy
	}{
		{"nil", nil, def},
		{"zero", &needs.RestartPolicy{}, def},
		{"local attempts kept", &needs.RestartPolicy{LocalAttempts: 2}, func() needs.RestartPolicy { e := def; e.LocalAttempts = 2; return e }()},
		{"set fields kept", &needs.RestartPolicy{Delay: needs.Duration(time.Second), MaxDelay: needs.Duration(time.Minute), Factor: 1.5, ResetAfter: needs.Duration(time.Hour)},
			needs.RestartPolicy{Delay: needs.Duration(time.Second), MaxDelay: needs.Duration(time.Minute), Factor: 1.5, ResetAfter: needs.Duration(time.Hour)}},
		{"default cap rises to a long delay", &needs.RestartPolicy{Delay: needs.Duration(time.Minute)},
			func() needs.RestartPolicy {
				e := def
				e.Delay, e.MaxDelay = needs.Duration(time.Minute), needs.Duration(time.Minute)
				return e
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Effective(); got != tt.want {
				t.Errorf("Effective(%+v) = %+v, want %+v", tt.p, got, tt.want)
			}
		})
	}
	p := &needs.RestartPolicy{Factor: 3}
	p.Effective()
	if *p != (needs.RestartPolicy{Factor: 3}) {
		t.Errorf("Effective changed its receiver: %+v", p)
	}
}

func TestRestartPolicyBackoff(t *testing.T) {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	pk := &needs.RestartPolicy{Delay: needs.Duration(time.Second), MaxDelay: needs.Duration(15 * time.Second), Factor: 1.5}
	flat := &needs.RestartPolicy{Delay: needs.Duration(time.Second), Factor: 1}
	tests := []struct {
		name     string
		p        *needs.RestartPolicy
		failures int
		want     time.Duration
	}{
		{"nil, none", nil, 0, 0},
		{"nil, negative", nil, -3, 0},
		{"nil, 1", nil, 1, 100 * time.Millisecond},
		{"nil, 2", nil, 2, 200 * time.Millisecond},
		{"nil, 9", nil, 9, 25600 * time.Millisecond},
		{"nil, 10 capped", nil, 10, 30 * time.Second},
		{"nil, huge", nil, math.MaxInt, 30 * time.Second},
		{"x1.5, 1", pk, 1, time.Second},
		{"x1.5, 2", pk, 2, ms(1500)},
		{"x1.5, 3", pk, 3, ms(2250)},
		{"x1.5, 7", pk, 7, ms(11390.625)},
		{"x1.5, 8 capped", pk, 8, 15 * time.Second},
		{"flat, 1", flat, 1, time.Second},
		{"flat, many", flat, 1 << 40, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Backoff(tt.failures); got != tt.want {
				t.Errorf("Backoff(%d) = %v, want %v", tt.failures, got, tt.want)
			}
		})
	}
	// The default policy is the historical back-off.
	for f := -1; f < 40; f++ {
		var p *needs.RestartPolicy
		if got, want := p.Backoff(f), needs.BackoffDelay(f); got != want {
			t.Errorf("nil policy Backoff(%d) = %v, BackoffDelay = %v", f, got, want)
		}
	}
	// Never decreasing, never above the cap.
	for _, p := range []*needs.RestartPolicy{nil, pk, flat, {Factor: 10, MaxDelay: needs.Duration(24 * time.Hour)}} {
		prev := time.Duration(0)
		for f := 1; f < 200; f++ {
			d := p.Backoff(f)
			if d < prev || d > time.Duration(p.Effective().MaxDelay) {
				t.Fatalf("policy %+v: Backoff(%d) = %v after %v (cap %v)", p, f, d, prev, time.Duration(p.Effective().MaxDelay))
			}
			prev = d
		}
	}
}

func TestDurationJSON(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{`"250ms"`, 250 * time.Millisecond},
		{`"1m30s"`, 90 * time.Second},
		{`"0s"`, 0},
		{`"-2s"`, -2 * time.Second}, // parsed; Validate refuses it
		{`1500`, 1500 * time.Millisecond},
		{`0`, 0},
	} {
		var d needs.Duration
		if err := json.Unmarshal([]byte(tt.in), &d); err != nil {
			t.Errorf("Unmarshal(%s): %v", tt.in, err)
			continue
		}
		if time.Duration(d) != tt.want {
			t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, time.Duration(d), tt.want)
		}
	}
	// Marshal writes a duration string that reads back the same.
	for _, v := range []time.Duration{0, time.Millisecond, 1500 * time.Millisecond, 25 * time.Hour} {
		b, err := json.Marshal(needs.Duration(v))
		if err != nil {
			t.Fatal(err)
		}
		if want := `"` + v.String() + `"`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", v, b, want)
		}
		var back needs.Duration
		if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != v {
			t.Errorf("round trip of %v = %v, %v", v, time.Duration(back), err)
		}
	}
	// null leaves the value alone, as for any number.
	d := needs.Duration(time.Second)
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d != needs.Duration(time.Second) {
		t.Errorf("Unmarshal(null) = %v, %v; want 1s kept", time.Duration(d), err)
	}
}

// TestRestartPolicyJSONErrors decodes needs the way the API does (unknown
// fields refused): a bad value names its field.
func TestRestartPolicyJSONErrors(t *testing.T) {
	tests := []struct {
		body   string
		wantIn []string
	}{
		{`{"restart":{"delay":"soon"}}`, []string{"restart.delay", "soon"}},
		{`{"restart":{"max_delay":"5 s"}}`, []string{"restart.max_delay"}},
		{`{"restart":{"reset_after":1.5}}`, []string{"restart.reset_after", "whole number"}},
		{`{"restart":{"delay":true}}`, []string{"restart.delay"}},
		{`{"restart":{"delay":99999999999999999}}`, []string{"restart.delay", "out of range"}},
		{`{"restart":{"delay":"9999999999h"}}`, []string{"restart.delay"}},
		{`{"restart":{"factor":"2"}}`, []string{"restart.factor"}},
		{`{"restart":{"local_attempts":1.5}}`, []string{"restart.local_attempts"}},
		{`{"restart":{"backoff":"1s"}}`, []string{"backoff"}},
		{`{"restart":"1s"}`, []string{"restart"}},
		{`{"socket_activation":"yes"}`, []string{"socket_activation"}},
	}
	for _, tt := range tests {
		dec := json.NewDecoder(bytes.NewReader([]byte(tt.body)))
		dec.DisallowUnknownFields()
		var n needs.Need
		err := dec.Decode(&n)
		if err == nil {
			t.Errorf("Decode(%s) = nil, want an error", tt.body)
			continue
		}
		for _, s := range tt.wantIn {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Decode(%s) = %q, does not mention %q", tt.body, err, s)
			}
		}
	}
	// A good policy reads into the need.
	var n needs.Need
	body := `{"name":"a","command":["x"],"protocols":["tcp"],"socket_activation":true,` +
		`"restart":{"local_attempts":2,"delay":"1s","max_delay":60000,"factor":1.5,"reset_after":"10m"}}`
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatal(err)
	}
	want := needs.RestartPolicy{LocalAttempts: 2, Delay: needs.Duration(time.Second), MaxDelay: needs.Duration(time.Minute),
		Factor: 1.5, ResetAfter: needs.Duration(10 * time.Minute)}
	if n.Restart == nil || *n.Restart != want || !n.SocketActivation {
		t.Fatalf("decoded restart %+v socket_activation %v, want %+v and true", n.Restart, n.SocketActivation, want)
	}
	if err := n.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// And writes back as duration strings.
	b, err := json.Marshal(n.Restart)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); s != `{"local_attempts":2,"delay":"1s","max_delay":"1m0s","factor":1.5,"reset_after":"10m0s"}` {
		t.Errorf("Marshal = %s", s)
	}
	c := n.Clone()
	c.Restart.Delay = 0
	if n.Restart.Delay != needs.Duration(time.Second) {
		t.Error("Clone shares the restart policy")
	}
}

func TestInstanceHandoffCloneAndPromote(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	in := &needs.Instance{Name: "web.0", State: needs.Running,
		Placement: needs.Placement{Alloc: "old0000000", MasterID: "a", Master: "ma", Ports: map[needs.Protocol]int{needs.HTTP: 1}},
		Handoff: &needs.Handoff{Placement: needs.Placement{Alloc: "new0000000", MasterID: "b", Master: "mb", Address: "10.0.0.2", PID: 7,
			Ports: map[needs.Protocol]int{needs.HTTP: 2}}, Since: t0}}
	c := in.Clone()
	c.Handoff.Ports[needs.HTTP] = 99
	c.Handoff.Master = "x"
	if in.Handoff.Ports[needs.HTTP] != 2 || in.Handoff.Master != "mb" {
		t.Fatalf("Clone shares the handoff: %+v", in.Handoff)
	}

	p := in.Clone()
	if !p.Promote(false, t0.Add(time.Hour)) {
		t.Fatal("Promote with a handoff = false")
	}
	if p.Alloc != "new0000000" || p.MasterID != "b" || p.Master != "mb" || p.Address != "10.0.0.2" || p.PID != 7 ||
		p.Ports[needs.HTTP] != 2 || p.Handoff != nil || p.State != needs.Starting || !p.Since.Equal(t0) {
		t.Errorf("promoted, not approved = %+v", p)
	}
	p = in.Clone()
	p.Promote(true, t0.Add(time.Hour))
	if p.State != needs.Running || !p.Since.Equal(t0.Add(time.Hour)) || p.Alloc != "new0000000" {
		t.Errorf("promoted, approved = %+v", p)
	}
	if p.Promote(true, t0) {
		t.Error("Promote without a handoff = true")
	}
	// Unplace leaves a handoff in place.
	u := in.Clone()
	u.Unplace()
	if u.Alloc != "" || u.Handoff == nil || u.Handoff.Alloc != "new0000000" {
		t.Errorf("Unplace = %+v", u)
	}
}

// TestIPCGroup: a need's IPC group defaults to its name; a named one is
// checked, and what is wrong with it is said.
func TestIPCGroup(t *testing.T) {
	n := needs.Need{Name: "web", Command: []string{"x"}}
	if n.Group() != "web" {
		t.Errorf("Group() = %q, want the name", n.Group())
	}
	for _, g := range []string{"shared", "My_DB.1", "a", strings.Repeat("g", 64)} {
		n.IPCGroup = g
		if err := n.Validate(); err != nil || n.Group() != g {
			t.Errorf("ipc_group %q: %v, group %q", g, err, n.Group())
		}
	}
	for _, g := range []string{"-x", "a/b", "a b", "ü", "a?t=1", strings.Repeat("g", 65), "."} {
		n.IPCGroup = g
		err := n.Validate()
		if err == nil || !strings.Contains(err.Error(), "ipc_group") {
			t.Errorf("ipc_group %q: %v, want an error naming ipc_group", g, err)
		}
	}
}
