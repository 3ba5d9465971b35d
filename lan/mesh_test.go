package lan_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"berth/lan"
	"berth/needs"
	"berth/pipes"
)

// dialMeshMaster connects a fake master that asks for the running set,
// with an http lease range, and returns it with the mesh frame that
// follows its welcome.
func dialMeshMaster(t *testing.T, srv *lan.Server, id, name string, httpRange [2]int) (*fakeMaster, pipes.Mesh) {
	t.Helper()
	conn, err := pipes.DialWS(t.Context(), "ws://"+srv.Addr()+"/v1/link", "")
	if err != nil {
		t.Fatal(err)
	}
	m := newFakeMaster(t, conn, id, name)
	m.send(pipes.TypeHello, &pipes.Hello{ID: id, Name: name, Address: "127.0.0.1", Version: "test", Services: true,
		Ranges: map[needs.Protocol][2]int{needs.HTTP: httpRange}})
	m.expect(pipes.TypeWelcome, nil)
	var mesh pipes.Mesh
	m.expect(pipes.TypeMesh, &mesh)
	return m, mesh
}

// nextOf returns the next message of type typ, skipping others (offers,
// services frames).
func (m *fakeMaster) nextOf(typ string, v any) {
	m.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		msg := m.next(10 * time.Second)
		if msg.Type == typ {
			if v != nil {
				if err := msg.Decode(v); err != nil {
					m.t.Fatal(err)
				}
			}
			return
		}
	}
	m.t.Fatalf("master %s: no %s frame", m.name, typ)
}

// TestMeshFrames: a master that asks for the running set gets the needs
// with ingress after its welcome and whenever that list changes, and only
// those needs' running instances; a master that does not ask gets none.
func TestMeshFrames(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	zero := 0
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "plain", Command: []string{"x"}, Instances: &zero, Protocols: []needs.Protocol{needs.HTTP}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "web", Command: []string{"x"}, Instances: &zero, Protocols: []needs.Protocol{needs.HTTP},
		Ingress: []needs.Ingress{{Protocol: needs.HTTP, Port: 8080}}, Balance: "least-conn"}); err != nil {
		t.Fatal(err)
	}
	m, mesh := dialMeshMaster(t, srv, id1, "m1", [2]int{40000, 40009})
	if len(mesh.Needs) != 1 || mesh.Needs[0].Name != "web" || mesh.Needs[0].Balance != "least-conn" || mesh.Needs[0].Ingress[0].Port != 8080 {
		t.Fatalf("mesh after welcome = %+v, want web only", mesh)
	}
	var svc pipes.Services
	m.nextOf(pipes.TypeServices, &svc)
	if !svc.Full || len(svc.Instances) != 0 {
		t.Errorf("first services frame %+v, want a full, empty set", svc)
	}

	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "api", Command: []string{"x"}, Instances: &zero, Protocols: []needs.Protocol{needs.TCP},
		Ingress: []needs.Ingress{{Protocol: needs.TCP, Port: 9000}}}); err != nil {
		t.Fatal(err)
	}
	m.nextOf(pipes.TypeMesh, &mesh)
	if len(mesh.Needs) != 2 || mesh.Needs[0].Name != "api" || mesh.Needs[1].Name != "web" {
		t.Errorf("mesh after adding api = %+v, want api and web", mesh)
	}
	if err := c.RemoveNeed(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	m.nextOf(pipes.TypeMesh, &mesh)
	if len(mesh.Needs) != 1 || mesh.Needs[0].Name != "api" {
		t.Errorf("mesh after removing web = %+v, want api", mesh)
	}

	// Running instances of a need without ingress never reach the mirror:
	// plain.0 runs first, then api.0, and the services frames up to
	// api.0's (pushed in order) name no instance of plain.
	r := &recorder{t: t, m: m, c: c}
	r.place("plain", needs.HTTP)
	r.place("api", needs.TCP)
	r.until("api.0")
	if slices.ContainsFunc(r.seen, func(s string) bool { return strings.HasPrefix(s, "plain.") }) {
		t.Errorf("services frames named %v: plain has no ingress", r.seen)
	}
	// Scaling api wrote it again, but the list did not change.
	if r.mesh != 0 {
		t.Errorf("%d mesh frames while api was scaled and placed; the list did not change", r.mesh)
	}
}

// recorder drives a fake master through placements and records the
// instances of every services frame it passes.
type recorder struct {
	t    *testing.T
	m    *fakeMaster
	c    *lan.Client
	seen []string
	mesh int // mesh frames passed
}

func (r *recorder) next(typ string, v any) {
	r.t.Helper()
	for {
		msg := r.m.next(10 * time.Second)
		if msg.Type == pipes.TypeMesh {
			r.mesh++
		}
		if msg.Type == pipes.TypeServices {
			var svc pipes.Services
			if err := msg.Decode(&svc); err != nil {
				r.t.Fatal(err)
			}
			for _, in := range svc.Instances {
				r.seen = append(r.seen, in.Instance)
			}
		}
		if msg.Type == typ {
			if v != nil {
				if err := msg.Decode(v); err != nil {
					r.t.Fatal(err)
				}
			}
			return
		}
	}
}

// place scales need to 1 and runs its instance on the fake master.
func (r *recorder) place(need string, proto needs.Protocol) {
	r.t.Helper()
	if _, err := r.c.Scale(r.t.Context(), need, 1); err != nil {
		r.t.Fatal(err)
	}
	var o pipes.Offer
	r.next(pipes.TypeOffer, &o)
	r.m.send(pipes.TypeBid, &pipes.Bid{Instance: o.Instance, Round: o.Round, OK: true})
	var g pipes.Grant
	r.next(pipes.TypeGrant, &g)
	st := startedFor(g, listen(r.t))
	if proto == "" {
		st.Ports = nil
		r.m.send(pipes.TypeStarted, st)
		r.m.send(pipes.TypeReady, &pipes.AllocRef{Alloc: g.Alloc})
	} else {
		st.Ports = map[needs.Protocol]int{proto: st.Ports[needs.HTTP]}
		r.m.send(pipes.TypeStarted, st)
	}
	r.next(pipes.TypeApprove, nil)
}

// until reads services frames until one names instance.
func (r *recorder) until(instance string) {
	r.t.Helper()
	for !slices.Contains(r.seen, instance) {
		r.next(pipes.TypeServices, nil)
	}
}

// TestUpstreamAndPeersSets: the masters get the running set of a need
// that another need has an upstream to, declared before or after it, and
// of a need with peers; never of a need that is neither.
func TestUpstreamAndPeersSets(t *testing.T) {
	srv, c := startServer(t, lan.Config{BidWindow: 5 * time.Second})
	m, _ := dialMeshMaster(t, srv, id1, "m1", [2]int{40000, 40009})
	zero := 0
	for _, spec := range []lan.NeedSpec{
		{Name: "plain", Protocols: []needs.Protocol{needs.TCP}},
		{Name: "db", Protocols: []needs.Protocol{needs.TCP}},
		{Name: "pp"},
	} {
		spec.Command, spec.Instances = []string{"x"}, &zero
		spec.Peers = spec.Name == "pp"
		if _, err := c.AddNeed(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{t: t, m: m, c: c}
	r.place("db", needs.TCP)
	r.place("plain", needs.TCP)
	// db runs, unseen; an upstream to it puts it in the pushed set.
	if _, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: "app", Command: []string{"x"}, Instances: &zero,
		Upstreams: []needs.Upstream{{Name: "db", Need: "db", Protocol: needs.TCP}}}); err != nil {
		t.Fatal(err)
	}
	r.until("db.0")
	r.place("pp", "")
	r.until("pp.0")
	if slices.ContainsFunc(r.seen, func(s string) bool { return strings.HasPrefix(s, "plain.") }) {
		t.Errorf("services frames named %v: plain is no one's upstream and has no peers", r.seen)
	}
}

// TestIngressConflicts: an ingress port inside a connected master's lease
// range, or already another need's ingress, is refused, naming it.
func TestIngressConflicts(t *testing.T) {
	srv, c := startServer(t, lan.Config{})
	dialMeshMaster(t, srv, id1, "m1", [2]int{40000, 40009})
	zero := 0
	add := func(name string, port int) error {
		_, err := c.AddNeed(t.Context(), lan.NeedSpec{Name: name, Command: []string{"x"}, Instances: &zero,
			Protocols: []needs.Protocol{needs.HTTP}, Ingress: []needs.Ingress{{Protocol: needs.HTTP, Port: port}}})
		return err
	}
	if err := add("web", 8080); err != nil {
		t.Fatal(err)
	}
	if err := add("other", 8080); !errors.Is(err, needs.ErrExists) || !strings.Contains(err.Error(), `port 8080 is already the ingress of need "web"`) {
		t.Errorf("same port as web: %v", err)
	}
	if err := add("ranged", 40005); !errors.Is(err, needs.ErrInvalid) || !strings.Contains(err.Error(), "master m1's http lease range 40000-40009") {
		t.Errorf("port in m1's range: %v", err)
	}
	if err := add("noproto", 0); !errors.Is(err, needs.ErrInvalid) || !strings.Contains(err.Error(), "ingress") {
		t.Errorf("port 0: %v", err)
	}
	if names := needNames(t, srv, ""); strings.Join(names, ",") != "web" {
		t.Errorf("needs %v after the refusals, want web only", names)
	}
}

// TestIngressReports: what a master reports of its ingress shows in
// master ls and as master.ingress events, for a port that opens and one
// that cannot; a report that repeats itself publishes nothing.
func TestIngressReports(t *testing.T) {
	srv, c := startServer(t, lan.Config{})
	events := subscribe(t, srv, c)
	m, _ := dialMeshMaster(t, srv, id1, "m1", [2]int{40000, 40009})
	report := pipes.IngressReport{Ports: []pipes.IngressPort{
		{Need: "web", Protocol: needs.HTTP, Port: 8080, Open: true},
		{Need: "db", Protocol: needs.TCP, Port: 5432, Error: "listen tcp 127.0.0.1:5432: bind: address already in use"},
	}}
	m.send(pipes.TypeIngress, &report)
	ev := waitEvent(t, events, 10*time.Second, "master.ingress", func(e lan.Event) bool { return e.Kind == lan.EventMasterIngress })
	if !strings.Contains(ev.Message, "opened web http:8080") || !strings.Contains(ev.Message, "cannot open db tcp:5432: listen tcp") {
		t.Errorf("event message %q", ev.Message)
	}
	ms, err := c.Masters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || len(ms[0].Ingress) != 2 || !ms[0].Ingress[0].Open || ms[0].Ingress[1].Open || ms[0].Ingress[1].Error == "" {
		t.Errorf("masters %+v, want m1 with web open and db failed", ms)
	}
	m.send(pipes.TypeIngress, &report) // the same again
	report.Ports[1] = pipes.IngressPort{Need: "db", Protocol: needs.TCP, Port: 5432, Open: true}
	m.send(pipes.TypeIngress, &report)
	ev = waitEvent(t, events, 10*time.Second, "master.ingress", func(e lan.Event) bool { return e.Kind == lan.EventMasterIngress })
	if ev.Message != "opened db tcp:5432" {
		t.Errorf("second event %q, want only db's opening (the repeated report published nothing)", ev.Message)
	}
	// A bad report is refused with an error frame, and changes nothing.
	m.send(pipes.TypeIngress, &pipes.IngressReport{Ports: []pipes.IngressPort{{Need: "web", Protocol: "udp", Port: 1}}})
	// The running set and the mesh may be pushed meanwhile (this master
	// asked for them); the answer is the next frame of another type.
	msg := m.next(10 * time.Second)
	for msg.Type == pipes.TypeServices || msg.Type == pipes.TypeMesh {
		msg = m.next(10 * time.Second)
	}
	if msg.Type != pipes.TypeError || msg.Error == nil || !strings.Contains(msg.Error.Message, "protocol") {
		t.Errorf("bad report answered %s %v, want an error naming the protocol", msg.Type, msg.Error)
	}
}
