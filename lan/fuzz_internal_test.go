package lan

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"berth/needs"
)

// FuzzNeedSpec feeds arbitrary bodies to the POST /v1/needs decoder and
// validation: no panic, and whatever is accepted is a valid need.
func FuzzNeedSpec(f *testing.F) {
	f.Add([]byte(`{"name":"web","command":["x","${PORT}"],"instances":3,"protocols":["http","tcp"],"env":{"A":"b"},"machine":"m1"}`))
	f.Add([]byte(`{"name":"web","command":[]}`))
	f.Add([]byte(`{"name":"web","command":["x"]}}`))
	f.Add([]byte(`{"instances":-1}`))
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
		n := &needs.Need{Name: spec.Name, Command: spec.Command, Instances: 1, Protocols: spec.Protocols, Env: spec.Env, Machine: spec.Machine}
		if spec.Instances != nil {
			n.Instances = *spec.Instances
		}
		if err := n.Validate(); err != nil {
			return
		}
		if n.Instances < 0 || len(n.Command) == 0 || needs.ValidateName("name", n.Name) != nil {
			t.Fatalf("invalid need accepted: %+v", n)
		}
	})
}
