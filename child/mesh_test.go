package child_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"berth/child"
	"berth/needs"
	"berth/pipes"
)

// nextEvent returns the next lifecycle event or fails.
func nextEvent(t *testing.T, c *child.Conn) child.Event {
	t.Helper()
	select {
	case ev := <-c.Events():
		return ev
	case <-t.Context().Done():
	}
	t.Fatal("no event")
	return child.Event{}
}

func TestMeshEvents(t *testing.T) {
	c, p := dial(t, newMaster(t))
	if _, ok := c.MeshState(); ok {
		t.Fatal("MeshState before any ready: ok")
	}
	peer := pipes.Peer{Instance: "web.0", Master: "m1", Address: "10.0.0.1", Ports: map[needs.Protocol]int{needs.HTTP: 16000}}
	ready := pipes.MeshState{Upstreams: []pipes.UpstreamState{{Name: "db", Need: "pg", Protocol: needs.TCP, Address: "127.0.0.1:41000",
		Targets: []pipes.Peer{}, Error: "need pg has no running instance"}}, Peers: []pipes.Peer{peer}}
	change := pipes.MeshState{Upstreams: []pipes.UpstreamState{{Name: "db", Need: "pg", Protocol: needs.TCP, Address: "127.0.0.1:41000",
		Targets: []pipes.Peer{{Instance: "pg.0", Master: "m2", Address: "10.0.0.2", Ports: map[needs.Protocol]int{needs.TCP: 15000}}}}},
		Peers: []pipes.Peer{peer, {Instance: "web.1", Master: "m2", Address: "10.0.0.2", Ports: map[needs.Protocol]int{needs.HTTP: 16001}}}}
	p.SendBody(pipes.TypeMeshReady, 0, ready)
	p.SendBody(pipes.TypeMeshError, 0, pipes.MeshError{Upstream: "db", Need: "pg", Message: "no running instance"})
	p.SendBody(pipes.TypeMeshChange, 0, change)
	p.SendBody(pipes.TypeMeshClose, 0, pipes.MeshClose{Reason: "scaled down"})
	p.Send(&pipes.Msg{V: 1, Type: pipes.TypeMeshClose}) // no body: a close all the same

	want := []child.Event{
		{Type: child.EventReady, State: ready},
		{Type: child.EventError, Error: pipes.MeshError{Upstream: "db", Need: "pg", Message: "no running instance"}},
		{Type: child.EventChange, State: change},
		{Type: child.EventClose, Reason: "scaled down"},
		{Type: child.EventClose},
	}
	for i, w := range want {
		if got := nextEvent(t, c); !reflect.DeepEqual(got, w) {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if st, ok := c.MeshState(); !ok || !reflect.DeepEqual(st, change) {
		t.Errorf("MeshState = %+v, %v; want the last change", st, ok)
	}

	// A bad body is answered with an invalid error, delivers nothing and
	// keeps the connection.
	p.Send(&pipes.Msg{V: 1, Type: pipes.TypeMeshChange, ID: 4, Body: []byte(`{"peers":[{"instance":"web"}]}`)})
	m := p.expect(t, pipes.TypeError)
	if m.ID != 4 || m.Error.Code != pipes.CodeInvalid || !strings.Contains(m.Error.Message, "instance") {
		t.Errorf("answer to a bad change: %+v", m)
	}
	p.ping(t, 5)
	select {
	case ev := <-c.Events():
		t.Errorf("a bad change delivered %+v", ev)
	default:
	}
	if st, _ := c.MeshState(); !reflect.DeepEqual(st, change) {
		t.Errorf("a bad change replaced the state: %+v", st)
	}
}

func TestMeshEventsDropOldest(t *testing.T) {
	c, p := dial(t, newMaster(t))
	const n = 64 + 10
	for i := range n {
		p.SendBody(pipes.TypeMeshError, 0, pipes.MeshError{Message: strings.Repeat("x", i+1)})
	}
	p.ping(t, 1) // every error has been handled
	if got := c.DroppedEvents(); got != 10 {
		t.Errorf("DroppedEvents = %d, want 10", got)
	}
	first := nextEvent(t, c)
	if len(first.Error.Message) != 11 {
		t.Errorf("first event kept is error %d, want 11 (the 10 oldest dropped)", len(first.Error.Message))
	}
	for range 64 - 2 {
		nextEvent(t, c)
	}
	if last := nextEvent(t, c); len(last.Error.Message) != n {
		t.Errorf("last event is error %d, want %d", len(last.Error.Message), n)
	}
}

func TestReadPeers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "peers.json")
	os.WriteFile(path, []byte(`[{"instance":"web.0","master":"m1","address":"10.0.0.1","ports":{"http":16000}}]`), 0o600)
	ps, err := child.ReadPeers(path)
	want := []pipes.Peer{{Instance: "web.0", Master: "m1", Address: "10.0.0.1", Ports: map[needs.Protocol]int{needs.HTTP: 16000}}}
	if err != nil || !reflect.DeepEqual(ps, want) {
		t.Errorf("ReadPeers = %+v, %v", ps, err)
	}
	os.WriteFile(path, []byte(`[{"instance":"web","master":"m1","address":"10.0.0.1"}]`), 0o600)
	if _, err := child.ReadPeers(path); err == nil || !strings.Contains(err.Error(), "[0]") {
		t.Errorf("ReadPeers of a bad entry: %v", err)
	}
	if _, err := child.ReadPeers(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Errorf("ReadPeers of no file: %v", err)
	}
}
