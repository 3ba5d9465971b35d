package pipes

import (
	"fmt"
	"math"

	"berth/needs"
)

// TypeLoads carries Loads either way on the master ↔ lanmanager link:
// a master sends the heartbeat figures of its children whose need is
// balanced by resource (its own, since it last sent them); the lanmanager
// passes them on to the other masters, so that a master's ingress and
// upstreams score the instances that run elsewhere too. A master sends
// them only to a lanmanager whose welcome set Loads, and the lanmanager
// only to masters whose hello set Loads.
const TypeLoads = "loads"

// MaxLoads bounds the entries of one loads frame: at most about 300 bytes
// each, so that a frame stays under MaxFrame.
const MaxLoads = 2048

// Load is one instance's latest heartbeat figures, as the resource
// strategy scores them. AgeMS is how old the figures were when the frame
// was sent, on the sender's clock: machines' clocks differ, ages do not.
type Load struct {
	Instance   string  `json:"instance"`
	Alloc      string  `json:"alloc"`
	CPUPercent float64 `json:"cpu_percent"`
	HeapUsed   uint64  `json:"heap_used,omitempty"`
	HeapTotal  uint64  `json:"heap_total,omitempty"`
	AgeMS      int64   `json:"age_ms"`
}

// Loads is the body of a loads frame.
type Loads struct {
	Loads []Load `json:"loads"`
}

// MaxLoadCPU bounds Load.CPUPercent: 100 per core of a 10,000-core machine.
const MaxLoadCPU = 1e6

// Validate checks a loads frame: at most MaxLoads entries, each with an
// instance name and an allocation id, a finite CPU share of 0 to
// MaxLoadCPU and an age of 0 to 24 h.
func (l *Loads) Validate() error {
	if len(l.Loads) > MaxLoads {
		return &needs.FieldError{Field: "loads", Msg: fmt.Sprintf("%d entries, more than %d", len(l.Loads), MaxLoads)}
	}
	for i, e := range l.Loads {
		field := func(f string) string { return fmt.Sprintf("loads[%d].%s", i, f) }
		if _, _, err := needs.ParseInstanceName(e.Instance); err != nil {
			return &needs.FieldError{Field: field("instance"), Msg: err.Error()}
		}
		if err := ValidateAlloc(e.Alloc); err != nil {
			return &needs.FieldError{Field: field("alloc"), Msg: err.Error()}
		}
		if math.IsNaN(e.CPUPercent) || e.CPUPercent < 0 || e.CPUPercent > MaxLoadCPU {
			return &needs.FieldError{Field: field("cpu_percent"), Msg: fmt.Sprintf("must be 0-%g, got %g", float64(MaxLoadCPU), e.CPUPercent)}
		}
		if e.AgeMS < 0 || e.AgeMS > MaxLinkMS {
			return &needs.FieldError{Field: field("age_ms"), Msg: fmt.Sprintf("must be 0-%d, got %d", MaxLinkMS, e.AgeMS)}
		}
	}
	return nil
}
