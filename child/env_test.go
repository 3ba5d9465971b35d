package child_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"berth/child"
	"berth/needs"
)

var envVars = []string{
	child.EnvNeed, child.EnvInstance, child.EnvHost, child.EnvPipe, child.EnvPort,
	needs.TCP.EnvName(), needs.HTTP.EnvName(), needs.WS.EnvName(), child.EnvPeersFile,
}

// clearEnv unsets every variable berth sets, as outside berth, and restores
// them at the end of the test.
func clearEnv(t *testing.T) {
	t.Helper()
	vars := envVars
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, child.EnvUpstreamPrefix) {
			vars = append(vars, k)
		}
	}
	for _, k := range vars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    child.Env
		wantErr string // the variable the error must name
	}{
		{name: "not under berth", want: child.Env{}},
		{
			name: "everything",
			env: map[string]string{
				"BERTH_NEED": "web", "BERTH_INSTANCE": "web.2", "BERTH_HOST": "127.0.0.1", "BERTH_PIPE": "/run/berth/web.2.sock",
				"BERTH_PORT_TCP": "15000", "BERTH_PORT_HTTP": "16000", "BERTH_PORT_WS": "17000", "PORT": "16000",
			},
			want: child.Env{
				Need: "web", Instance: "web.2", Host: "127.0.0.1", Pipe: "/run/berth/web.2.sock",
				Ports: map[needs.Protocol]int{needs.TCP: 15000, needs.HTTP: 16000, needs.WS: 17000}, Port: 16000,
			},
		},
		{
			name: "one protocol, empty variables are unset",
			env:  map[string]string{"BERTH_INSTANCE": "api.0", "BERTH_PORT_HTTP": "65535", "BERTH_PORT_TCP": ""},
			want: child.Env{Instance: "api.0", Ports: map[needs.Protocol]int{needs.HTTP: 65535}},
		},
		{
			name: "upstreams and peers",
			env: map[string]string{"BERTH_UPSTREAM_DB": "127.0.0.1:41000", "BERTH_UPSTREAM_CACHE_1": "127.0.0.1:41001",
				"BERTH_UPSTREAM_": "x", "BERTH_UPSTREAM_EMPTY": "", "BERTH_PEERS_FILE": "/rt/peers/web.0.json"},
			want: child.Env{PeersFile: "/rt/peers/web.0.json", Upstreams: map[string]string{"DB": "127.0.0.1:41000", "CACHE_1": "127.0.0.1:41001"}},
		},
		{name: "port not a number", env: map[string]string{"BERTH_PORT_HTTP": "x"}, wantErr: "BERTH_PORT_HTTP"},
		{name: "port 0", env: map[string]string{"BERTH_PORT_TCP": "0"}, wantErr: "BERTH_PORT_TCP"},
		{name: "port too big", env: map[string]string{"BERTH_PORT_WS": "65536"}, wantErr: "BERTH_PORT_WS"},
		{name: "port negative", env: map[string]string{"BERTH_PORT_HTTP": "-80"}, wantErr: "BERTH_PORT_HTTP"},
		{name: "port with space", env: map[string]string{"BERTH_PORT_HTTP": " 80"}, wantErr: "BERTH_PORT_HTTP"},
		{name: "bad PORT", env: map[string]string{"BERTH_PORT_HTTP": "80", "PORT": "eighty"}, wantErr: "PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := child.FromEnv()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, needs.ErrInvalid) {
					t.Fatalf("FromEnv = %+v, %v; want an invalid error naming %s", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FromEnv =\n %+v, want\n %+v", got, tt.want)
			}
		})
	}
}

func TestEnvAddr(t *testing.T) {
	e := child.Env{Host: "10.1.2.3", Ports: map[needs.Protocol]int{needs.HTTP: 16000}}
	if got := e.Addr(needs.HTTP); got != "10.1.2.3:16000" {
		t.Errorf("Addr(http) = %q", got)
	}
	if got := e.Addr(needs.TCP); got != "" {
		t.Errorf("Addr of a protocol without a port = %q, want empty", got)
	}
	e.Host = "::1"
	if got := e.Addr(needs.HTTP); got != "[::1]:16000" {
		t.Errorf("Addr with IPv6 host = %q", got)
	}
	e.Host = ""
	if got := e.Addr(needs.HTTP); got != ":16000" {
		t.Errorf("Addr without host = %q", got)
	}
	if got := (child.Env{}).Addr(needs.HTTP); got != "" {
		t.Errorf("zero Env Addr = %q", got)
	}
}

func TestEnvUpstream(t *testing.T) {
	e := child.Env{Upstreams: map[string]string{"DB": "127.0.0.1:41000", "CACHE_1": "127.0.0.1:41001"}}
	for name, want := range map[string]string{"db": "127.0.0.1:41000", "cache-1": "127.0.0.1:41001", "cache_1": "127.0.0.1:41001", "queue": ""} {
		if got := e.Upstream(name); got != want {
			t.Errorf("Upstream(%q) = %q, want %q", name, got, want)
		}
	}
}
