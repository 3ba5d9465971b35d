package needs_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"berth/needs"
)

// validNeed returns a need that passes Validate; cases mutate a copy.
func validNeed() needs.Need {
	return needs.Need{
		Name:      "web",
		Command:   []string{"/bin/server", "--port", "${BERTH_PORT_HTTP}"},
		Instances: 2,
		Protocols: []needs.Protocol{needs.HTTP, needs.TCP},
		Env:       map[string]string{"MODE": "prod", "_X1": "a=b"},
		Machine:   "m1",
	}
}

func TestNeedValidateOK(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*needs.Need)
	}{
		{"full", func(*needs.Need) {}},
		{"minimal", func(n *needs.Need) {
			*n = needs.Need{Name: "a", Command: []string{"x"}}
		}},
		{"zero instances", func(n *needs.Need) { n.Instances = 0 }},
		{"max instances", func(n *needs.Need) { n.Instances = needs.MaxInstances }},
		{"name 63 chars", func(n *needs.Need) { n.Name = strings.Repeat("a", 63) }},
		{"name with digits and inner dash", func(n *needs.Need) { n.Name = "0web-1" }},
		{"all protocols", func(n *needs.Need) { n.Protocols = []needs.Protocol{needs.TCP, needs.HTTP, needs.WS} }},
		{"no protocols", func(n *needs.Need) { n.Protocols = nil }},
		{"no env", func(n *needs.Need) { n.Env = nil }},
		{"no machine", func(n *needs.Need) { n.Machine = "" }},
		{"empty later arg", func(n *needs.Need) { n.Command = []string{"x", ""} }},
		{"lowercase env key", func(n *needs.Need) { n.Env = map[string]string{"port": "1", "BERTHX": "2"} }},
		{"driver", func(n *needs.Need) {
			n.Driver, n.DriverOpts = "bwrap", []string{"bind=/srv/data", "bind=/srv/more", "ro=", "x=a=b", "ro-bind=/srv/conf", "tmpfs=/home", "a.b=1"}
		}},
		{"driver exec", func(n *needs.Need) { n.Driver = needs.DefaultDriver }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validNeed()
			tt.mod(&n)
			if err := n.Validate(); err != nil {
				t.Fatalf("Validate(%+v) = %v, want nil", n, err)
			}
		})
	}
}

func TestNeedValidateInvalid(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(*needs.Need)
		wantField string
	}{
		{"empty name", func(n *needs.Need) { n.Name = "" }, "name"},
		{"uppercase name", func(n *needs.Need) { n.Name = "Web" }, "name"},
		{"leading dash", func(n *needs.Need) { n.Name = "-web" }, "name"},
		{"trailing dash", func(n *needs.Need) { n.Name = "web-" }, "name"},
		{"dot in name", func(n *needs.Need) { n.Name = "web.0" }, "name"},
		{"name 64 chars", func(n *needs.Need) { n.Name = strings.Repeat("a", 64) }, "name"},
		{"nil command", func(n *needs.Need) { n.Command = nil }, "command"},
		{"empty command", func(n *needs.Need) { n.Command = []string{} }, "command"},
		{"blank command[0]", func(n *needs.Need) { n.Command = []string{" \t", "arg"} }, "command"},
		{"too many args", func(n *needs.Need) { n.Command = make([]string, needs.MaxCommandArgs+1); n.Command[0] = "x" }, "command"},
		{"NUL in arg", func(n *needs.Need) { n.Command = []string{"x", "a\x00b"} }, "command[1]"},
		{"arg too long", func(n *needs.Need) { n.Command = []string{"x", "y", strings.Repeat("z", needs.MaxArgLen+1)} }, "command[2]"},
		{"instances -1", func(n *needs.Need) { n.Instances = -1 }, "instances"},
		{"instances max+1", func(n *needs.Need) { n.Instances = needs.MaxInstances + 1 }, "instances"},
		{"unknown protocol", func(n *needs.Need) { n.Protocols = []needs.Protocol{"udp"} }, "protocols[0]"},
		{"uppercase protocol", func(n *needs.Need) { n.Protocols = []needs.Protocol{needs.TCP, "HTTP"} }, "protocols[1]"},
		{"duplicate protocol", func(n *needs.Need) { n.Protocols = []needs.Protocol{needs.HTTP, needs.HTTP} }, "protocols[1]"},
		{"env key with dash", func(n *needs.Need) { n.Env = map[string]string{"A-B": "1"} }, "env"},
		{"env key leading digit", func(n *needs.Need) { n.Env = map[string]string{"1A": "1"} }, "env"},
		{"env key empty", func(n *needs.Need) { n.Env = map[string]string{"": "1"} }, "env"},
		{"env BERTH_X reserved", func(n *needs.Need) { n.Env = map[string]string{"BERTH_X": "1"} }, "env"},
		{"env PORT reserved", func(n *needs.Need) { n.Env = map[string]string{"PORT": "1"} }, "env"},
		{"env LISTEN_FDS reserved", func(n *needs.Need) { n.Env = map[string]string{"LISTEN_FDS": "1"} }, "env"},
		{"env value NUL", func(n *needs.Need) { n.Env = map[string]string{"A": "x\x00"} }, "env.A"},
		{"env value too long", func(n *needs.Need) { n.Env = map[string]string{"A": strings.Repeat("v", needs.MaxEnvLen+1)} }, "env.A"},
		{"machine uppercase", func(n *needs.Need) { n.Machine = "M1" }, "machine"},
		{"machine with dot", func(n *needs.Need) { n.Machine = "m1.lan" }, "machine"},
		{"driver uppercase", func(n *needs.Need) { n.Driver = "Bwrap" }, "driver"},
		{"driver with slash", func(n *needs.Need) { n.Driver = "../x" }, "driver"},
		{"driver opt without =", func(n *needs.Need) { n.DriverOpts = []string{"a=1", "bind"} }, "driver_opts[1]"},
		{"driver opt empty key", func(n *needs.Need) { n.DriverOpts = []string{"=1"} }, "driver_opts[0]"},
		{"driver opt NUL", func(n *needs.Need) { n.DriverOpts = []string{"a=\x00"} }, "driver_opts[0]"},
		{"driver opt key with slash", func(n *needs.Need) { n.DriverOpts = []string{"a/b=1"} }, "driver_opts[0]"},
		{"driver opt key starting with -", func(n *needs.Need) { n.DriverOpts = []string{"-a=1"} }, "driver_opts[0]"},
		{"driver opts too many", func(n *needs.Need) { n.DriverOpts = make([]string, needs.MaxDriverOpts+1) }, "driver_opts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validNeed()
			tt.mod(&n)
			err := n.Validate()
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error on field %q", n, tt.wantField)
			}
			var fe *needs.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %T %v, want *needs.FieldError", err, err)
			}
			if fe.Field != tt.wantField {
				t.Errorf("Field = %q, want %q (err: %v)", fe.Field, tt.wantField, err)
			}
			if !errors.Is(err, needs.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantField+": ") {
				t.Errorf("Error() = %q, want it to start with %q", err.Error(), tt.wantField+": ")
			}
		})
	}
}

func TestParseProtocols(t *testing.T) {
	tests := []struct {
		in        string
		want      []needs.Protocol
		wantField string // "" means no error
	}{
		{in: "tcp", want: []needs.Protocol{needs.TCP}},
		{in: "tcp,http,ws", want: []needs.Protocol{needs.TCP, needs.HTTP, needs.WS}},
		{in: "tcp, HTTP", want: []needs.Protocol{needs.TCP, needs.HTTP}},
		{in: "  Ws  ", want: []needs.Protocol{needs.WS}},
		{in: "", want: nil},
		{in: "   ", want: nil},
		{in: "udp", wantField: "protocols[0]"},
		{in: "tcp,udp", wantField: "protocols[1]"},
		{in: "tcp,,http", wantField: "protocols[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := needs.ParseProtocols(tt.in)
			if tt.wantField != "" {
				var fe *needs.FieldError
				if !errors.As(err, &fe) || fe.Field != tt.wantField || !errors.Is(err, needs.ErrInvalid) {
					t.Fatalf("ParseProtocols(%q) = %v, %v; want FieldError on %q", tt.in, got, err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseProtocols(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseProtocols(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    map[string]string
		wantErr bool
	}{
		{name: "nil", in: nil, want: nil},
		{name: "ok", in: []string{"A=1", "B="}, want: map[string]string{"A": "1", "B": ""}},
		{name: "equals in value", in: []string{"URL=a=b=c"}, want: map[string]string{"URL": "a=b=c"}},
		{name: "last wins", in: []string{"A=1", "A=2"}, want: map[string]string{"A": "2"}},
		{name: "missing equals", in: []string{"A=1", "NOEQ"}, wantErr: true},
		{name: "empty key", in: []string{"=v"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := needs.ParseEnv(tt.in)
			if tt.wantErr {
				var fe *needs.FieldError
				if !errors.As(err, &fe) || fe.Field != "env" || !errors.Is(err, needs.ErrInvalid) {
					t.Fatalf("ParseEnv(%q) = %v, %v; want FieldError on env", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEnv(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseEnv(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseInstanceName(t *testing.T) {
	tests := []struct {
		in        string
		wantNeed  string
		wantIndex int
		wantErr   bool
	}{
		{in: "web.0", wantNeed: "web", wantIndex: 0},
		{in: "web.12", wantNeed: "web", wantIndex: 12},
		{in: "a-b.3", wantNeed: "a-b", wantIndex: 3},
		{in: "web", wantErr: true},
		{in: "web.", wantErr: true},
		{in: "web.x", wantErr: true},
		{in: "web.01", wantErr: true},
		{in: "web.+1", wantErr: true},
		{in: "web.-1", wantErr: true},
		{in: "web.1.5x", wantErr: true},
		{in: ".0", wantErr: true},
		{in: "Web.0", wantErr: true},
		{in: "-web.0", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			need, idx, err := needs.ParseInstanceName(tt.in)
			if tt.wantErr {
				var fe *needs.FieldError
				if !errors.As(err, &fe) || fe.Field != "instance" || !errors.Is(err, needs.ErrInvalid) {
					t.Fatalf("ParseInstanceName(%q) = %q, %d, %v; want FieldError on instance", tt.in, need, idx, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseInstanceName(%q): %v", tt.in, err)
			}
			if need != tt.wantNeed || idx != tt.wantIndex {
				t.Errorf("ParseInstanceName(%q) = %q, %d; want %q, %d", tt.in, need, idx, tt.wantNeed, tt.wantIndex)
			}
			if back := needs.InstanceName(need, idx); back != tt.in {
				t.Errorf("InstanceName(%q, %d) = %q, want %q", need, idx, back, tt.in)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	for _, tt := range []struct {
		failures int
		want     time.Duration
	}{
		{-1, 0},
		{0, 0},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{9, 25600 * time.Millisecond},
		{10, needs.BackoffMax},
		{100, 30 * time.Second},
		{1 << 30, needs.BackoffMax},
	} {
		if got := needs.BackoffDelay(tt.failures); got != tt.want {
			t.Errorf("BackoffDelay(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
	prev := needs.BackoffDelay(0)
	for f := 1; f <= 200; f++ {
		d := needs.BackoffDelay(f)
		if d < prev {
			t.Fatalf("BackoffDelay(%d) = %v < BackoffDelay(%d) = %v: not monotonic", f, d, f-1, prev)
		}
		if d < needs.BackoffMin || d > needs.BackoffMax {
			t.Fatalf("BackoffDelay(%d) = %v outside [%v, %v]", f, d, needs.BackoffMin, needs.BackoffMax)
		}
		prev = d
	}
}

func TestNeedCloneIsDeep(t *testing.T) {
	orig := validNeed()
	orig.Created = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	want := validNeed()
	want.Created = orig.Created
	want.Command = append([]string(nil), orig.Command...)
	want.Protocols = append([]needs.Protocol(nil), orig.Protocols...)
	want.Env = map[string]string{}
	for k, v := range orig.Env {
		want.Env[k] = v
	}

	c := orig.Clone()
	if !reflect.DeepEqual(*c, orig) {
		t.Fatalf("Clone() = %+v, want %+v", *c, orig)
	}
	c.Name = "other"
	c.Command[0] = "/bin/evil"
	c.Command = append(c.Command, "more")
	c.Protocols[0] = needs.WS
	c.Env["MODE"] = "dev"
	c.Env["NEW"] = "1"
	delete(c.Env, "_X1")
	c.Instances = 99
	if !reflect.DeepEqual(orig, want) {
		t.Errorf("mutating the clone changed the original:\n got %+v\nwant %+v", orig, want)
	}
	orig.DriverOpts = []string{"bind=/a"}
	c = orig.Clone()
	c.DriverOpts[0] = "bind=/etc"
	if orig.DriverOpts[0] != "bind=/a" {
		t.Errorf("mutating the clone's driver options changed the original: %q", orig.DriverOpts)
	}
	orig.DriverOpts = nil
	if !reflect.DeepEqual(orig, want) {
		t.Errorf("mutating the clone changed the original:\n got %+v\nwant %+v", orig, want)
	}

	empty := needs.Need{Name: "a", Command: []string{"x"}}
	ec := empty.Clone()
	if ec.Env != nil || ec.Protocols != nil {
		t.Errorf("Clone of nil env/protocols = %v/%v, want nil/nil", ec.Env, ec.Protocols)
	}
}

func TestInstanceCloneIsDeep(t *testing.T) {
	orig := &needs.Instance{Need: "web", Index: 1, Name: "web.1", State: needs.Running,
		Placement: needs.Placement{Ports: map[needs.Protocol]int{needs.HTTP: 16000}}}
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone() = %+v, want %+v", c, orig)
	}
	c.Ports[needs.HTTP] = 1
	c.Ports[needs.TCP] = 2
	c.State = needs.Backoff
	if len(orig.Ports) != 1 || orig.Ports[needs.HTTP] != 16000 || orig.State != needs.Running {
		t.Errorf("mutating the clone changed the original: %+v", orig)
	}
}

func TestFieldError(t *testing.T) {
	err := error(&needs.FieldError{Field: "name", Msg: "bad"})
	if err.Error() != "name: bad" {
		t.Errorf("Error() = %q, want %q", err.Error(), "name: bad")
	}
	if !errors.Is(err, needs.ErrInvalid) {
		t.Error("FieldError does not match ErrInvalid")
	}
	if errors.Is(err, needs.ErrNotFound) {
		t.Error("FieldError matches ErrNotFound")
	}
}

// TestInstanceRecordLayout: a record written before Placement was embedded
// (its fields at the top level of the instance and of its handoff) reads
// back the same, and is written back in that layout.
func TestInstanceRecordLayout(t *testing.T) {
	old := `{"need":"web","index":0,"instance":"web.0","state":"running","since":"2026-01-02T03:04:05Z",` +
		`"alloc":"a1","master_id":"m1","master":"one","address":"10.0.0.1","pid":42,"ports":{"http":16000},` +
		`"started_at":"2026-01-02T03:04:06Z","handoff":{"alloc":"a2","master_id":"m2","master":"two","pid":43,` +
		`"since":"2026-01-02T03:04:07Z"}}`
	var in needs.Instance
	if err := json.Unmarshal([]byte(old), &in); err != nil {
		t.Fatal(err)
	}
	if in.Alloc != "a1" || in.MasterID != "m1" || in.Master != "one" || in.PID != 42 || in.Ports[needs.HTTP] != 16000 ||
		in.Handoff == nil || in.Handoff.Alloc != "a2" || in.Handoff.Master != "two" || in.Handoff.PID != 43 {
		t.Fatalf("decoded %+v (handoff %+v)", in, in.Handoff)
	}
	b, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var a, w map[string]any
	json.Unmarshal(b, &a)
	json.Unmarshal([]byte(old), &w)
	if !reflect.DeepEqual(a, w) {
		t.Errorf("written back as\n %s\nwant the old layout\n %s", b, old)
	}
}
