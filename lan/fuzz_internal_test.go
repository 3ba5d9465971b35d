package lan

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"berth/needs"
)

// FuzzNeedSpec feeds arbitrary bodies to the POST /v1/needs decoder and
// validation: no panic, and whatever is accepted is a valid need.
func FuzzNeedSpec(f *testing.F) {
	f.Add([]byte(`{"name":"web","command":["x","${PORT}"],"instances":3,"protocols":["http","tcp"],"env":{"A":"b"},"machine":"m1"}`))
	f.Add([]byte(`{"name":"web","command":[]}`))
	f.Add([]byte(`{"name":"web","command":["x"]}}`))
	f.Add([]byte(`{"instances":-1}`))
	f.Add([]byte(`{"name":"web","command":["x"],"protocols":["tcp"],"socket_activation":true,"restart":{"local_attempts":2,"delay":"1s","max_delay":60000,"factor":1.5,"reset_after":"10m"}}`))
	f.Add([]byte(`{"name":"web","command":["x"],"socket_activation":true}`))
	f.Add([]byte(`{"name":"web","command":["x"],"restart":{"delay":"-1s","factor":0.5}}`))
	f.Add([]byte(`{"name":"web","command":["x"],"restart":{"delay":99999999999999999,"max_delay":"soon"}}`))
	f.Add([]byte(`{"name":"web","command":["x"],"restart":null}`))
	f.Add([]byte(`{"name":"web","command":["x"],"limits":{"memory":"256M","cpus":0.5,"pids":200}}`))
	f.Add([]byte(`{"name":"web","command":["x"],"limits":{"memory":1073741824,"cpus":1e-9,"pids":-3}}`))
	f.Add([]byte(`{"name":"web","command":["x"],"limits":{"memory":"9999P"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/needs", bytes.NewReader(b))
		var spec NeedSpec
		if err := decodeBody(w, r, &spec); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		n := spec.Need()
		if err := n.Validate(); err != nil {
			if !errors.Is(err, needs.ErrInvalid) || err.Error() == "" {
				t.Fatalf("Validate = %v, want a FieldError", err)
			}
			return
		}
		if n.Instances < 0 || len(n.Command) == 0 || needs.ValidateName("name", n.Name) != nil {
			t.Fatalf("invalid need accepted: %+v", n)
		}
		if n.SocketActivation && len(n.Protocols) == 0 {
			t.Fatalf("socket activation without a port accepted: %+v", n)
		}
		if p := n.Restart; p != nil {
			e := p.Effective()
			if p.LocalAttempts < 0 || p.LocalAttempts > needs.MaxLocalAttempts || e.Delay <= 0 || e.MaxDelay < e.Delay ||
				time.Duration(e.MaxDelay) > needs.MaxRestartDelay || !(e.Factor >= 1 && e.Factor <= 10) || e.ResetAfter <= 0 {
				t.Fatalf("invalid restart policy accepted: %+v (effective %+v)", p, e)
			}
			for f := 1; f < 64; f++ {
				if d := p.Backoff(f); d < time.Duration(e.Delay) || d > time.Duration(e.MaxDelay) {
					t.Fatalf("policy %+v: Backoff(%d) = %v outside [%v, %v]", p, f, d, time.Duration(e.Delay), time.Duration(e.MaxDelay))
				}
			}
		}
		if l := n.Limit(); l.Memory < 0 || l.Memory != 0 && l.Memory < needs.MinMemory || l.Memory > needs.MaxMemory ||
			l.CPUs != 0 && !(l.CPUs >= needs.MinCPUs && l.CPUs <= needs.MaxCPUs) || l.PIDs < 0 || l.PIDs > needs.MaxPIDs {
			t.Fatalf("invalid limits accepted: %+v", l)
		}
		// What is accepted survives the store's JSON round trip.
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var back needs.Need
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("stored need %s does not read back: %v", b, err)
		}
		if err := back.Validate(); err != nil || !reflect.DeepEqual(back.Restart, n.Restart) || back.SocketActivation != n.SocketActivation {
			t.Fatalf("need changed in a JSON round trip: %+v -> %+v (%v)", n, &back, err)
		}
	})
}
