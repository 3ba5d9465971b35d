package pipes_test

import (
	"strings"
	"testing"

	"berth/needs"
	"berth/pipes"
)

func TestServicesValidate(t *testing.T) {
	web := func() pipes.Service {
		return pipes.Service{Need: "web", Instance: "web.0", Alloc: "a1b2c3d4e5", Master: "m1", Address: "10.0.0.1",
			Ports: map[needs.Protocol]int{needs.HTTP: 16000}}
	}
	with := func(edit func(*pipes.Service)) []pipes.Service { s := web(); edit(&s); return []pipes.Service{s} }
	for _, tc := range []struct {
		name string
		s    pipes.Services
		want string // "" = valid; else a part of the error
	}{
		{"full", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: []pipes.Service{web()}}, ""},
		{"empty full", pipes.Services{Rev: 1, Full: true, Parts: 1}, ""},
		{"diff", pipes.Services{Rev: 3, Base: 2, Parts: 1, Removed: []string{"web.1", "db.0"}, Instances: []pipes.Service{web()}}, ""},
		{"host name", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Address = "box-1.lan" })}, ""},
		{"no rev", pipes.Services{Full: true, Parts: 1}, "rev: must be > 0"},
		{"full with base", pipes.Services{Rev: 2, Base: 1, Full: true, Parts: 1}, "base: must be 0"},
		{"full with removed", pipes.Services{Rev: 2, Full: true, Parts: 1, Removed: []string{"web.0"}}, "removed: must be empty"},
		{"diff without base", pipes.Services{Rev: 2, Parts: 1}, "base: a diff's base"},
		{"diff base not below", pipes.Services{Rev: 2, Base: 2, Parts: 1}, "base: a diff's base"},
		{"no parts", pipes.Services{Rev: 1, Full: true}, "parts: must be 1-"},
		{"part out of range", pipes.Services{Rev: 1, Full: true, Part: 2, Parts: 2}, "part: must be 0-1"},
		{"bad removed name", pipes.Services{Rev: 2, Base: 1, Parts: 1, Removed: []string{"web"}}, "removed[0]: instance: \"web\" is not <need>.<index>"},
		{"removed twice", pipes.Services{Rev: 2, Base: 1, Parts: 1, Removed: []string{"web.1", "web.1"}}, "removed[1]: \"web.1\" listed twice"},
		{"removed and listed", pipes.Services{Rev: 2, Base: 1, Parts: 1, Removed: []string{"web.0"}, Instances: []pipes.Service{web()}}, "removed[0]: \"web.0\" listed twice"},
		{"instance of another need", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Instance = "db.0" })}, "instances[0]: instance: \"db.0\" is not an instance of need \"web\""},
		{"bad alloc", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Alloc = "x" })}, "instances[0]: alloc"},
		{"bad master", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Master = "" })}, "instances[0]: master"},
		{"no address", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Address = "" })}, "instances[0]: address"},
		{"unspecified address", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Address = "0.0.0.0" })}, "instances[0]: address"},
		{"port 0", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: with(func(s *pipes.Service) { s.Ports[needs.HTTP] = 0 })}, "instances[0]: ports.http: 0 is outside 1-65535"},
		{"instance twice", pipes.Services{Rev: 1, Full: true, Parts: 1, Instances: []pipes.Service{web(), web()}}, "instances[1].instance: \"web.0\" listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := pipes.New(pipes.TypeServices, &tc.s)
			if err != nil {
				t.Fatal(err)
			}
			var got pipes.Services
			err = m.Decode(&got)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Decode: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Decode: %v, want an error containing %q", err, tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), "services: "):
				t.Fatalf("Decode: %v, want it to name the message type", err)
			}
		})
	}
}

func TestPreparedSendsTheSameFrame(t *testing.T) {
	m, err := pipes.New(pipes.TypeServices, &pipes.Services{Rev: 1, Full: true, Parts: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipes.Prepare(m)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pipes.Encode(nil, m)
	if p.Size() != len(want) {
		t.Fatalf("Size %d, want %d", p.Size(), len(want))
	}
}
