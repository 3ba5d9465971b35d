package needs

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// State is the lifecycle state of an instance.
type State string

// Instance states; see the package doc for the transitions.
const (
	Pending  State = "pending"  // waiting for a master to be granted it
	Starting State = "starting" // granted; the child is being spawned and checked
	Running  State = "running"  // approved: every declared port answered
	Stopping State = "stopping" // asked to stop; dropped once its master confirms
	Backoff  State = "backoff"  // failed; placed again at NextAttempt
)

// Placed reports whether an instance in state s is held by a master.
func (s State) Placed() bool { return s == Starting || s == Running || s == Stopping }

// Instance is one copy of a need and, once placed, the service it runs.
type Instance struct {
	Need  string    `json:"need"`
	Index int       `json:"index"`
	Name  string    `json:"instance"`
	State State     `json:"state"`
	Since time.Time `json:"since"`

	// Placement is the current placement; its Alloc is empty while
	// unplaced.
	Placement
	Reason      string    `json:"reason,omitempty"`
	LastExit    string    `json:"last_exit,omitempty"`
	Failures    int       `json:"failures,omitempty"`
	Restarts    int       `json:"restarts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// FailedOn is the id of the master of the last failed attempt; placement
	// prefers other masters while there are any.
	FailedOn string `json:"failed_on,omitempty"`
	// Removing is set when the instance is stopping for good (scale down or
	// need rm) rather than to be placed again.
	Removing bool `json:"removing,omitempty"`
	// Handoff is a second placement of a running instance, started on
	// another master while the instance's master drains. Once it is
	// approved it becomes the instance's placement and the old allocation
	// is stopped.
	Handoff *Handoff `json:"handoff,omitempty"`
}

// Handoff is the replacement placement of an instance whose master drains.
// It is fenced by its own allocation id, like any placement.
type Handoff struct {
	Placement
	// Since is when it was granted.
	Since time.Time `json:"since"`
}

// Placement is one allocation of an instance on a master: the instance's
// own, or its handoff's. Its fields are flattened into the JSON of the
// record that embeds it.
type Placement struct {
	// Alloc is the allocation id that fences every message about it.
	Alloc     string           `json:"alloc,omitempty"`
	MasterID  string           `json:"master_id,omitempty"`
	Master    string           `json:"master,omitempty"`
	Address   string           `json:"address,omitempty"`
	PID       int              `json:"pid,omitempty"`
	Ports     map[Protocol]int `json:"ports,omitempty"`
	StartedAt time.Time        `json:"started_at,omitzero"`
}

// InstanceName returns the name of instance i of need.
func InstanceName(need string, i int) string { return need + "." + strconv.Itoa(i) }

// ParseInstanceName splits "web.2" into "web" and 2.
func ParseInstanceName(s string) (string, int, error) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return "", 0, &FieldError{Field: "instance", Msg: fmt.Sprintf("%q is not <need>.<index>", s)}
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n < 0 || strconv.Itoa(n) != s[i+1:] {
		return "", 0, &FieldError{Field: "instance", Msg: fmt.Sprintf("%q is not <need>.<index>", s)}
	}
	if err := ValidateName("instance", s[:i]); err != nil {
		return "", 0, err
	}
	return s[:i], n, nil
}

// Clone returns a deep copy of in.
func (in *Instance) Clone() *Instance {
	c := *in
	c.Ports = maps.Clone(in.Ports)
	if in.Handoff != nil {
		h := *in.Handoff
		h.Ports = maps.Clone(in.Handoff.Ports)
		c.Handoff = &h
	}
	return &c
}

// Unplace clears everything that belongs to a placement. A handoff in
// progress is left alone; see [Instance.Promote].
func (in *Instance) Unplace() { in.Placement = Placement{} }

// Promote makes the handoff the instance's placement, dropping the old one,
// and reports whether there was a handoff. The instance is starting, or
// running if approved is true.
func (in *Instance) Promote(approved bool, now time.Time) bool {
	h := in.Handoff
	if h == nil {
		return false
	}
	in.Placement = h.Placement
	in.Handoff = nil
	if approved {
		in.State, in.Since = Running, now
	} else {
		in.State, in.Since = Starting, h.Since
	}
	return true
}

// Back-off bounds for an instance that keeps failing.
const (
	BackoffMin  = 100 * time.Millisecond
	BackoffMax  = 30 * time.Second
	StableAfter = 30 * time.Second
)

// BackoffDelay returns the delay before placing again an instance that has
// failed `failures` times in a row: 100 ms, doubling, capped at 30 s.
func BackoffDelay(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := BackoffMin
	for i := 1; i < failures && d < BackoffMax; i++ {
		d *= 2
	}
	return min(d, BackoffMax)
}

// Master describes a connected (or recently seen) master.
type Master struct {
	ID        string              `json:"id"`
	Name      string              `json:"name"`
	Address   string              `json:"address"`
	Connected bool                `json:"connected"`
	Since     time.Time           `json:"since"`
	Instances int                 `json:"instances"`
	Ranges    map[Protocol][2]int `json:"ranges,omitempty"`
	Free      map[Protocol]int    `json:"free,omitempty"`
	Version   string              `json:"version,omitempty"`
	// Draining masters take no new work; their instances are moved away.
	Draining bool `json:"draining,omitempty"`
	// LastSeen is when the lanmanager last heard from the master.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Ingress is the master's ingress ports, as it last reported them.
	Ingress []IngressPort `json:"ingress,omitempty"`
	// Drivers are the master's spawn drivers as its hello listed them
	// (exec first); empty for a master from before drivers were listed.
	Drivers []DriverStatus `json:"drivers,omitempty"`
}

// DriverStatus is one spawn driver of a master: its name and version,
// and whether it can run children there, or why not.
type DriverStatus struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// String is "name", "name version", with " (unavailable: reason)" when it
// is not available.
func (d DriverStatus) String() string {
	s := d.Name
	if d.Version != "" {
		s += " " + d.Version
	}
	if !d.Available {
		s += " (unavailable: " + d.Reason + ")"
	}
	return s
}

// NeedStatus is a need with the live count of its instances, as the API and
// CLI show it.
type NeedStatus struct {
	Need
	Running      int         `json:"running"`
	Pending      int         `json:"pending"`
	Reasons      []string    `json:"reasons,omitempty"`
	InstanceList []*Instance `json:"instance_list,omitempty"`
}

// Count sets st's counts and reasons from the need's instances (in index
// order), and its instance list (copies) if withInstances.
func (st *NeedStatus) Count(ins []*Instance, withInstances bool) {
	reasons := map[string]bool{}
	for _, in := range ins {
		switch in.State {
		case Running:
			st.Running++
		case Pending, Backoff, Starting:
			if !in.Removing {
				st.Pending++
			}
		}
		if in.Reason != "" && !in.Removing { // a running instance has one while its master drains
			reasons[in.Name+": "+in.Reason] = true
		}
		if withInstances {
			st.InstanceList = append(st.InstanceList, in.Clone())
		}
	}
	for r := range reasons {
		st.Reasons = append(st.Reasons, r)
	}
	slices.Sort(st.Reasons)
}
