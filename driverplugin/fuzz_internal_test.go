package driverplugin

import (
	"context"
	"encoding/json"
	"errors"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/driverplugin/driverpb"
	"berth/spawn"
)

// fakeDriver accepts everything; the fuzz target checks the adapter's
// decoding and conversions, not a driver.
type fakeDriver struct{}

func (fakeDriver) Fingerprint(context.Context) Fingerprint { return Fingerprint{Name: "f"} }
func (fakeDriver) Start(_ context.Context, t Task) (Handle, error) {
	return Handle{ID: t.ID, PID: 1, State: []byte(t.Spec.Instance)}, nil
}
func (fakeDriver) Wait(context.Context, string) (spawn.Exit, error) { return spawn.Exit{Code: 1}, nil }
func (fakeDriver) Stop(context.Context, string, time.Duration) (spawn.Exit, error) {
	return spawn.Exit{Signal: "SIGTERM", Code: -1}, nil
}
func (fakeDriver) Signal(context.Context, string, syscall.Signal) error { return nil }
func (fakeDriver) Stats(context.Context, string) (Stats, error)         { return Stats{}, nil }
func (fakeDriver) Recover(_ context.Context, h Handle) (Handle, error)  { return h, nil }
func (fakeDriver) CheckOptions(_ context.Context, opts []string) error {
	if len(opts) > 1 {
		return errors.New("one option at most")
	}
	return nil
}

// FuzzServerRequests feeds arbitrary bytes, as the gRPC server would
// receive them, to each request decoder and the driver-side adapter: no
// input may panic, and a decoded request survives a re-encoding.
func FuzzServerRequests(f *testing.F) {
	for _, m := range []proto.Message{
		&driverpb.StartRequest{TaskId: "a1", Instance: "web.0", Argv: []string{"sleep", "1"}, Env: []string{"A=b"}, LogPath: "/tmp/x",
			Marks: []string{"BERTH_ALLOC=a1"}, Limits: &driverpb.Limits{MemoryBytes: 1 << 20}, Options: []string{"bind=/srv"}},
		&driverpb.SignalRequest{TaskId: "a1", Signal: 15},
		&driverpb.StopRequest{TaskId: "a1", GraceMs: 100},
		&driverpb.RecoverRequest{Handle: &driverpb.TaskHandle{TaskId: "a1", Pid: 7, State: []byte(`{"pid":7}`)}},
		&driverpb.TaskRef{TaskId: "a1"},
		&driverpb.CheckOptionsRequest{Options: []string{"bind=/srv", "rw=/x"}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := &server{impl: fakeDriver{}}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		var start driverpb.StartRequest
		if proto.Unmarshal(b, &start) == nil {
			s.Start(ctx, &start)
			if _, err := proto.Marshal(&start); err != nil {
				t.Fatalf("re-encode a decoded start request: %v", err)
			}
		}
		var sig driverpb.SignalRequest
		if proto.Unmarshal(b, &sig) == nil {
			s.Signal(ctx, &sig)
		}
		var stop driverpb.StopRequest
		if proto.Unmarshal(b, &stop) == nil {
			s.Stop(ctx, &stop)
		}
		var rec driverpb.RecoverRequest
		if proto.Unmarshal(b, &rec) == nil {
			s.Recover(ctx, &rec)
		}
		var co driverpb.CheckOptionsRequest
		if proto.Unmarshal(b, &co) == nil {
			r, err := s.CheckOptions(ctx, &co)
			if err != nil || (r.Error != "") != (len(co.Options) > 1) {
				t.Fatalf("CheckOptions(%q) = %v, %v", co.Options, r, err)
			}
		}
		var exit driverpb.ExitResult
		if proto.Unmarshal(b, &exit) == nil {
			exitFromPB(&exit)
		}
	})
}

// FuzzReattachState: a re-attach state read back from master.db, however
// damaged, gives a TLS config or an error, never a panic.
func FuzzReattachState(f *testing.F) {
	f.Add([]byte(`{"pid":1,"start_time":2,"network":"unix","addr":"/tmp/p","protocol_version":1,"client_cert":"AAAA","client_key":"AAAA","server_cert":"AAAA"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st ReattachState
		if json.Unmarshal(b, &st) != nil {
			return
		}
		cfg, err := st.tlsConfig()
		if err == nil && (cfg == nil || len(cfg.Certificates) != 1) {
			t.Fatalf("tlsConfig = %v, nil", cfg)
		}
	})
}
