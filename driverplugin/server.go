package driverplugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"berth/driverplugin/driverpb"
	"berth/spawn"
)

// server adapts a TaskDriver to the generated gRPC service.
type server struct {
	driverpb.UnimplementedDriverServer
	impl TaskDriver
}

func (s *server) Fingerprint(ctx context.Context, _ *driverpb.FingerprintRequest) (*driverpb.FingerprintResponse, error) {
	fp := s.impl.Fingerprint(ctx)
	return &driverpb.FingerprintResponse{Name: fp.Name, Version: fp.Version, Available: fp.Available, Reason: fp.Reason,
		Signals: fp.Signals, ResourceLimits: fp.ResourceLimits, SocketActivation: fp.SocketActivation}, nil
}

// CheckOptions answers with the error of an OptionsChecker; a driver that
// is not one takes any options here.
func (s *server) CheckOptions(ctx context.Context, r *driverpb.CheckOptionsRequest) (*driverpb.CheckOptionsResponse, error) {
	oc, ok := s.impl.(OptionsChecker)
	if !ok {
		return &driverpb.CheckOptionsResponse{}, nil
	}
	if err := oc.CheckOptions(ctx, r.Options); err != nil {
		return &driverpb.CheckOptionsResponse{Error: err.Error()}, nil
	}
	return &driverpb.CheckOptionsResponse{}, nil
}

func (s *server) Start(ctx context.Context, r *driverpb.StartRequest) (*driverpb.StartResponse, error) {
	if r.TaskId == "" {
		return nil, toStatus(fmt.Errorf("%w: empty task id", ErrBadRequest))
	}
	t := Task{ID: r.TaskId, Spec: spawn.Spec{Instance: r.Instance, Command: r.Argv, Env: r.Env, Dir: r.Dir,
		LogPath: r.LogPath, Tracking: spawn.Tracking{Cgroup: r.Cgroup, Marks: r.Marks}, DriverOpts: r.Options}}
	if l := r.Limits; l != nil {
		t.Limits = Limits{MemoryBytes: l.MemoryBytes, CPUMillis: l.CpuMillis, Pids: l.Pids}
	}
	h, err := s.impl.Start(ctx, t)
	if err != nil {
		return nil, toStatus(err)
	}
	return &driverpb.StartResponse{Handle: handleToPB(h), StartTime: h.StartTime, Tracking: h.Tracking}, nil
}

func (s *server) Wait(ctx context.Context, r *driverpb.TaskRef) (*driverpb.ExitResult, error) {
	ex, err := s.impl.Wait(ctx, r.TaskId)
	if err != nil {
		return nil, toStatus(err)
	}
	return exitToPB(ex), nil
}

func (s *server) Stop(ctx context.Context, r *driverpb.StopRequest) (*driverpb.ExitResult, error) {
	ex, err := s.impl.Stop(ctx, r.TaskId, time.Duration(r.GraceMs)*time.Millisecond)
	if err != nil {
		return nil, toStatus(err)
	}
	return exitToPB(ex), nil
}

func (s *server) Signal(ctx context.Context, r *driverpb.SignalRequest) (*driverpb.SignalResponse, error) {
	if r.Signal <= 0 || r.Signal > 64 {
		return nil, toStatus(fmt.Errorf("%w: signal %d", ErrBadRequest, r.Signal))
	}
	err := s.impl.Signal(ctx, r.TaskId, syscall.Signal(r.Signal))
	if errors.Is(err, os.ErrProcessDone) {
		return &driverpb.SignalResponse{Exited: true}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &driverpb.SignalResponse{}, nil
}

func (s *server) Stats(ctx context.Context, r *driverpb.TaskRef) (*driverpb.StatsResponse, error) {
	st, err := s.impl.Stats(ctx, r.TaskId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &driverpb.StatsResponse{CpuSeconds: st.CPU.Seconds(), RssBytes: st.RSS}, nil
}

func (s *server) Recover(ctx context.Context, r *driverpb.RecoverRequest) (*driverpb.RecoverResponse, error) {
	if r.Handle == nil || r.Handle.TaskId == "" {
		return nil, toStatus(fmt.Errorf("%w: no task handle", ErrBadRequest))
	}
	h, err := s.impl.Recover(ctx, handleFromPB(r.Handle))
	if errors.Is(err, spawn.ErrGone) {
		return &driverpb.RecoverResponse{Gone: true}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &driverpb.RecoverResponse{Tracking: h.Tracking, StartTime: h.StartTime}, nil
}

func handleToPB(h Handle) *driverpb.TaskHandle {
	return &driverpb.TaskHandle{TaskId: h.ID, Pid: int64(h.PID), State: h.State}
}

func handleFromPB(h *driverpb.TaskHandle) Handle {
	return Handle{ID: h.TaskId, PID: int(h.Pid), State: h.State}
}

func exitToPB(ex spawn.Exit) *driverpb.ExitResult {
	r := &driverpb.ExitResult{Code: int32(ex.Code), Signal: ex.Signal}
	switch {
	case errors.Is(ex.Err, spawn.ErrExitUnknown):
		r.Unknown = true
	case ex.Err != nil:
		r.Error = ex.Err.Error()
	}
	return r
}

func exitFromPB(r *driverpb.ExitResult) spawn.Exit {
	ex := spawn.Exit{Code: int(r.Code), Signal: r.Signal}
	switch {
	case r.Unknown:
		ex.Err = spawn.ErrExitUnknown
	case r.Error != "":
		ex.Err = errors.New(r.Error)
	}
	return ex
}
