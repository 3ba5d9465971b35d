package pipes_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"berth/needs"
	"berth/pipes"
)

func TestMsgDecodeValidates(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		body  string
		into  any
		field string // "" when the body is valid
	}{
		{"started ok", pipes.TypeStarted, `{"alloc":"a1b2c3d4e5","instance":"web.0","pid":12,"address":"h","ports":{"http":16000}}`, new(pipes.Started), ""},
		{"started pid 0", pipes.TypeStarted, `{"alloc":"a1b2c3d4e5","instance":"web.0","pid":0,"address":"h"}`, new(pipes.Started), "pid"},
		{"started bad port", pipes.TypeStarted, `{"alloc":"a1b2c3d4e5","instance":"web.0","pid":1,"ports":{"http":70000}}`, new(pipes.Started), "ports.http"},
		{"started bad protocol", pipes.TypeStarted, `{"alloc":"a1b2c3d4e5","instance":"web.0","pid":1,"ports":{"udp":1}}`, new(pipes.Started), "ports"},
		{"started bad alloc", pipes.TypeStarted, `{"alloc":"SHORT","instance":"web.0","pid":1}`, new(pipes.Started), "alloc"},
		{"child hello pid 0", pipes.TypeChildHello, `{"pid":0}`, new(pipes.ChildHello), "pid"},
		{"child hello ok, unknown field ignored", pipes.TypeChildHello, `{"pid":3,"later":"field"}`, new(pipes.ChildHello), ""},
		{"stop negative grace", pipes.TypeStop, `{"alloc":"a1b2c3d4e5","grace_ms":-1}`, new(pipes.Stop), "grace_ms"},
		{"hello short id", pipes.TypeHello, `{"id":"x","name":"m1","address":"a"}`, new(pipes.Hello), "id"},
		{"hello bad alloc inside", pipes.TypeHello, `{"id":"12345678","name":"m1","address":"10.0.0.1","allocs":[{"alloc":"a1b2c3d4e5","instance":"web.0","pid":-4}]}`, new(pipes.Hello), "pid"},
		{"hello unspecified address", pipes.TypeHello, `{"id":"12345678","name":"m1","address":"0.0.0.0"}`, new(pipes.Hello), "address"},
		{"bid bad instance", pipes.TypeBid, `{"instance":"web"}`, new(pipes.Bid), "instance"},
		{"grant bad need", pipes.TypeGrant, `{"instance":"web.1","alloc":"a1b2c3d4e5","need":{"name":"web"}}`, new(pipes.Grant), "command"},
		{"grant env ok", pipes.TypeGrant, `{"instance":"web.1","alloc":"a1b2c3d4e5","need":{"name":"web","command":["x"]},"env":{"BERTH_IPC":"ws://h:1"}}`, new(pipes.Grant), ""},
		{"grant env not berth's", pipes.TypeGrant, `{"instance":"web.1","alloc":"a1b2c3d4e5","need":{"name":"web","command":["x"]},"env":{"LD_PRELOAD":"/x.so"}}`, new(pipes.Grant), "env"},
		{"grant env lower case", pipes.TypeGrant, `{"instance":"web.1","alloc":"a1b2c3d4e5","need":{"name":"web","command":["x"]},"env":{"BERTH_ipc":"x"}}`, new(pipes.Grant), "env"},
		{"grant env NUL", pipes.TypeGrant, `{"instance":"web.1","alloc":"a1b2c3d4e5","need":{"name":"web","command":["x"]},"env":{"BERTH_IPC":"a\u0000b"}}`, new(pipes.Grant), "env.BERTH_IPC"},
		{"mesh ok", pipes.TypeMesh, `{"needs":[{"name":"web","ingress":[{"protocol":"http","port":8080}],"balance":"hash"}]}`, new(pipes.Mesh), ""},
		{"mesh port 0", pipes.TypeMesh, `{"needs":[{"name":"web","ingress":[{"protocol":"http","port":0}]}]}`, new(pipes.Mesh), "needs[0]"},
		{"mesh need twice", pipes.TypeMesh, `{"needs":[{"name":"web","ingress":[{"protocol":"http","port":1}]},{"name":"web","ingress":[{"protocol":"http","port":2}]}]}`, new(pipes.Mesh), "needs[1].name"},
		{"mesh bad balance", pipes.TypeMesh, `{"needs":[{"name":"web","ingress":[{"protocol":"http","port":1}],"balance":"random"}]}`, new(pipes.Mesh), "balance"},
		{"mesh bad weights", pipes.TypeMesh, `{"needs":[{"name":"web","ingress":[{"protocol":"http","port":1}],"balance":"resource","weights":"cpu=x"}]}`, new(pipes.Mesh), "balance_weights"},
		{"mesh no ingress", pipes.TypeMesh, `{"needs":[{"name":"web","ingress":[]}]}`, new(pipes.Mesh), "needs[0].ingress"},
		{"ingress ok", pipes.TypeIngress, `{"ports":[{"need":"web","protocol":"http","port":8080,"open":true}]}`, new(pipes.IngressReport), ""},
		{"ingress error on open", pipes.TypeIngress, `{"ports":[{"need":"web","protocol":"http","port":8080,"open":true,"error":"x"}]}`, new(pipes.IngressReport), "ports[0].error"},
		{"ingress bad port", pipes.TypeIngress, `{"ports":[{"need":"web","protocol":"http","port":70000}]}`, new(pipes.IngressReport), "ports[0].port"},
		{"ingress bad protocol", pipes.TypeIngress, `{"ports":[{"need":"web","protocol":"udp","port":53}]}`, new(pipes.IngressReport), "ports[0].protocol"},
		{"stats negative cpu", pipes.TypeStats, `{"pid":1,"cpu_percent":-1}`, new(pipes.Stats), "stats"},
		{"welcome ok", pipes.TypeWelcome, `{"heartbeat_ms":1000,"ttl_ms":5000}`, new(pipes.Welcome), ""},
		{"welcome ttl overflowing a duration", pipes.TypeWelcome, `{"heartbeat_ms":1000,"ttl_ms":9300000000000}`, new(pipes.Welcome), "ttl_ms"},
		{"welcome huge heartbeat", pipes.TypeWelcome, `{"heartbeat_ms":9300000000000}`, new(pipes.Welcome), "heartbeat_ms"},
		{"welcome heartbeat not below ttl", pipes.TypeWelcome, `{"heartbeat_ms":5000,"ttl_ms":5000}`, new(pipes.Welcome), "ttl_ms"},
		{"logs negative tail", pipes.TypeLogs, `{"instance":"web.0","tail":-1}`, new(pipes.Logs), "tail"},
		{"logs bad instance", pipes.TypeLogs, `{"instance":"../etc/passwd"}`, new(pipes.Logs), "instance"},
		{"mesh state ok", pipes.TypeMeshReady, `{"upstreams":[{"name":"db","need":"pg","protocol":"tcp","address":"127.0.0.1:4000","targets":[]}],"peers":[{"instance":"web.0","master":"m1","address":"10.0.0.1","ports":{"http":80}}]}`, new(pipes.MeshState), ""},
		{"mesh state bad upstream name", pipes.TypeMeshChange, `{"upstreams":[{"name":"DB","need":"pg","protocol":"tcp"}]}`, new(pipes.MeshState), "name"},
		{"mesh state bad address", pipes.TypeMeshChange, `{"upstreams":[{"name":"db","need":"pg","protocol":"tcp","address":"127.0.0.1:0"}]}`, new(pipes.MeshState), "address"},
		{"mesh state bad target", pipes.TypeMeshChange, `{"upstreams":[{"name":"db","need":"pg","protocol":"tcp","targets":[{"instance":"web.0","master":"m1","address":"0.0.0.0"}]}]}`, new(pipes.MeshState), "address"},
		{"mesh state peer of no instance", pipes.TypeMeshChange, `{"peers":[{"instance":"web","master":"m1","address":"h"}]}`, new(pipes.MeshState), "instance"},
		{"mesh state peer bad port", pipes.TypeMeshChange, `{"peers":[{"instance":"web.1","master":"m1","address":"h","ports":{"http":0}}]}`, new(pipes.MeshState), "ports.http"},
		{"mesh error empty", pipes.TypeMeshError, `{"upstream":"db"}`, new(pipes.MeshError), "message"},
		{"mesh error ok", pipes.TypeMeshError, `{"upstream":"db","need":"pg","message":"no running instance"}`, new(pipes.MeshError), ""},
		{"mesh close reason too long", pipes.TypeMeshClose, `{"reason":"` + strings.Repeat("x", pipes.MaxMeshErrorLen+1) + `"}`, new(pipes.MeshClose), "reason"},
		{"loads ok", pipes.TypeLoads, `{"loads":[{"instance":"web.0","alloc":"a1b2c3d4e5","cpu_percent":87.5,"heap_used":10,"heap_total":20,"age_ms":300}]}`, new(pipes.Loads), ""},
		{"loads bad instance", pipes.TypeLoads, `{"loads":[{"instance":"web","alloc":"a1b2c3d4e5","age_ms":1}]}`, new(pipes.Loads), "loads[0].instance"},
		{"loads bad alloc", pipes.TypeLoads, `{"loads":[{"instance":"web.0","alloc":"../x","age_ms":1}]}`, new(pipes.Loads), "loads[0].alloc"},
		{"loads negative cpu", pipes.TypeLoads, `{"loads":[{"instance":"web.0","alloc":"a1b2c3d4e5","cpu_percent":-3}]}`, new(pipes.Loads), "loads[0].cpu_percent"},
		{"loads huge cpu", pipes.TypeLoads, `{"loads":[{"instance":"web.0","alloc":"a1b2c3d4e5","cpu_percent":1e300}]}`, new(pipes.Loads), "loads[0].cpu_percent"},
		{"loads negative age", pipes.TypeLoads, `{"loads":[{"instance":"web.0","alloc":"a1b2c3d4e5","age_ms":-1}]}`, new(pipes.Loads), "loads[0].age_ms"},
		{"loads too many", pipes.TypeLoads, `{"loads":[` + strings.Repeat(`{"instance":"web.0","alloc":"a1b2c3d4e5"},`, pipes.MaxLoads) + `{"instance":"web.0","alloc":"a1b2c3d4e5"}]}`, new(pipes.Loads), "loads"},
		{"log data ok", pipes.TypeLogData, `{"data":"aGk=","eof":true}`, new(pipes.LogData), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &pipes.Msg{V: 1, Type: tt.typ, Body: []byte(tt.body)}
			err := m.Decode(tt.into)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			var pe *pipes.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Decode: %v (%T), want *pipes.Error", err, err)
			}
			if pe.Code != pipes.CodeInvalid {
				t.Errorf("code %q, want invalid", pe.Code)
			}
			if !strings.Contains(pe.Message, tt.field) || !strings.HasPrefix(pe.Message, tt.typ+": ") {
				t.Errorf("message %q does not name type %q and field %q", pe.Message, tt.typ, tt.field)
			}
			if !errors.Is(err, needs.ErrInvalid) {
				t.Errorf("errors.Is(%v, needs.ErrInvalid) = false", err)
			}
		})
	}
}

func TestMsgDecodeBadBody(t *testing.T) {
	for name, body := range map[string]string{
		"missing":    "",
		"bad JSON":   `{"pid":`,
		"wrong type": `{"pid":"one"}`,
	} {
		t.Run(name, func(t *testing.T) {
			m := &pipes.Msg{V: 1, Type: pipes.TypeChildHello, Body: []byte(body)}
			var h pipes.ChildHello
			err := m.Decode(&h)
			if pe, ok := errors.AsType[*pipes.Error](err); !ok || pe.Code != pipes.CodeInvalid || !strings.HasPrefix(pe.Message, "child.hello: ") {
				t.Errorf("Decode: %v, want an invalid *pipes.Error naming child.hello", err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	m, err := pipes.New(pipes.TypeStats, pipes.Stats{PID: 1, SampledAt: time.Unix(0, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if m.V != pipes.Version || m.Type != pipes.TypeStats || len(m.Body) == 0 {
		t.Errorf("New = %+v", m)
	}
	if m, err := pipes.New(pipes.TypeChildReady, nil); err != nil || m.Body != nil {
		t.Errorf("New without body = %+v, %v", m, err)
	}
	if _, err := pipes.New("x", func() {}); err == nil {
		t.Error("New with an unencodable body succeeded")
	}
}

func TestValidateAlloc(t *testing.T) {
	for a, ok := range map[string]bool{
		"abcd1234":              true,
		"a-b-c-d-e":             true,
		strings.Repeat("a", 64): true,
		"abc":                   false,
		strings.Repeat("a", 65): false,
		"ABCD1234":              false,
		"abcd_1234":             false,
	} {
		if err := pipes.ValidateAlloc(a); (err == nil) != ok {
			t.Errorf("ValidateAlloc(%q) = %v, want ok=%v", a, err, ok)
		}
	}
}
