package lifecycle

import (
	"fmt"
	"strings"

	"berth/needs"
)

// Transition is one change of state the machine makes, on one kind of
// event.
type Transition struct {
	From, To needs.State
	On       string // what causes it
	Why      string
}

// Table lists every transition of an instance's state. The machine checks
// each move against it (Allowed) and docs/architecture.md draws it
// (Diagram). Removal (the record deleted) is not a state: a stopping
// instance whose master confirms the stop, or is lost, is dropped.
var Table = []Transition{
	{needs.Pending, needs.Starting, "grant", "a master's bid won the offer round"},
	{needs.Starting, needs.Running, "checked", "every declared port answered the lanmanager"},
	{needs.Starting, needs.Running, "ready", "a child without ports said ready"},
	{needs.Starting, needs.Running, "uptime", "a child without ports stayed up for the minimum uptime"},
	{needs.Starting, needs.Backoff, "rejected", "a port did not answer before the start deadline"},
	{needs.Starting, needs.Backoff, "exited", "the child exited before it was approved"},
	{needs.Starting, needs.Backoff, "deadline", "its master never reported the child"},
	{needs.Running, needs.Backoff, "exited", "the child exited"},
	{needs.Backoff, needs.Pending, "due", "its back-off is over"},
	{needs.Backoff, needs.Pending, "api", "need restart"},
	{needs.Starting, needs.Pending, "master lost", "its master was not heard from for the TTL"},
	{needs.Running, needs.Pending, "master lost", "its master was not heard from for the TTL"},
	{needs.Stopping, needs.Pending, "master lost", "its master was lost while it stopped"},
	{needs.Starting, needs.Pending, "reconnected", "its master came back without it"},
	{needs.Running, needs.Pending, "reconnected", "its master came back without it"},
	{needs.Stopping, needs.Pending, "reconnected", "its master came back without it"},
	{needs.Stopping, needs.Pending, "exited", "stopped, and wanted again meanwhile (scaled back up)"},
	{needs.Running, needs.Starting, "exited", "moved to its replacement (handoff), not yet approved"},
	{needs.Running, needs.Starting, "rejected", "moved to its replacement (handoff), not yet approved"},
	{needs.Running, needs.Starting, "master lost", "moved to its replacement (handoff), not yet approved"},
	{needs.Running, needs.Starting, "reconnected", "moved to its replacement (handoff), not yet approved"},
	{needs.Starting, needs.Stopping, "api", "scaled down or need removed"},
	{needs.Running, needs.Stopping, "api", "scaled down or need removed"},
}

// Allowed reports whether Table lists the move from → to on the event on.
func Allowed(from, to needs.State, on string) bool {
	for _, t := range Table {
		if t.From == from && t.To == to && t.On == on {
			return true
		}
	}
	return false
}

// Diagram draws Table as a Mermaid state diagram, one edge per pair of
// states with the events that cause it.
func Diagram() string {
	type edge struct{ from, to needs.State }
	var order []edge
	ons := map[edge][]string{}
	for _, t := range Table {
		e := edge{t.From, t.To}
		if _, ok := ons[e]; !ok {
			order = append(order, e)
		}
		ons[e] = append(ons[e], t.On)
	}
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	b.WriteString("    [*] --> pending: need add, scale up\n")
	for _, e := range order {
		fmt.Fprintf(&b, "    %s --> %s: %s\n", e.from, e.to, strings.Join(ons[e], ", "))
	}
	b.WriteString("    pending --> [*]: scale down, need rm\n")
	b.WriteString("    backoff --> [*]: scale down, need rm\n")
	b.WriteString("    stopping --> [*]: exited, master lost\n")
	return b.String()
}
