package portoffice

import (
	"cmp"
	"fmt"
	"slices"

	"berth/needs"
)

// MaxPort is the highest TCP port.
const MaxPort = 65535

// Range is the ports Start .. Start+Size-1.
type Range struct{ Start, Size int }

// End returns the last port of r.
func (r Range) End() int { return r.Start + r.Size - 1 }

// Contains reports whether port lies in r.
func (r Range) Contains(port int) bool { return port >= r.Start && port <= r.End() }

// String returns r as "16000-16999".
func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End()) }

// overlaps reports whether r and s share a port.
func (r Range) overlaps(s Range) bool { return r.Start <= s.End() && s.Start <= r.End() }

// ValidateRanges checks that rs names at least one known protocol, that
// every range lies within 1..65535 and that no two ranges overlap. It returns
// the first problem as a *needs.FieldError: Field is "portranges",
// "portrangestart.<proto>" or "portrangesize.<proto>".
func ValidateRanges(rs map[needs.Protocol]Range) error {
	if len(rs) == 0 {
		return &needs.FieldError{Field: "portranges", Msg: "must configure at least one protocol"}
	}
	protos := sortedProtos(rs)
	for _, p := range protos {
		if err := p.Validate(); err != nil {
			return &needs.FieldError{Field: "portranges", Msg: err.Error()}
		}
		if err := validateRange(p, rs[p]); err != nil {
			return err
		}
	}
	for i, p := range protos {
		for _, q := range protos[:i] {
			if rs[p].overlaps(rs[q]) {
				return &needs.FieldError{Field: "portrangestart." + string(p),
					Msg: fmt.Sprintf("%s range %s overlaps %s range %s", p, rs[p], q, rs[q])}
			}
		}
	}
	return nil
}

func validateRange(p needs.Protocol, r Range) error {
	if r.Start < 1 || r.Start > MaxPort {
		return &needs.FieldError{Field: "portrangestart." + string(p),
			Msg: fmt.Sprintf("must be in 1..%d, got %d", MaxPort, r.Start)}
	}
	if r.Size < 1 {
		return &needs.FieldError{Field: "portrangesize." + string(p),
			Msg: fmt.Sprintf("must be >= 1, got %d", r.Size)}
	}
	if r.Size > MaxPort-r.Start+1 { // End() > MaxPort, without overflow
		return &needs.FieldError{Field: "portrangesize." + string(p),
			Msg: fmt.Sprintf("start %d with size %d ends past %d (size must be <= %d)", r.Start, r.Size, MaxPort, MaxPort-r.Start+1)}
	}
	return nil
}

// protoRank orders protocols as needs.Protocols does, unknown ones last.
func protoRank(p needs.Protocol) int {
	if i := slices.Index(needs.Protocols, p); i >= 0 {
		return i
	}
	return len(needs.Protocols)
}

func compareProto(a, b needs.Protocol) int {
	if c := protoRank(a) - protoRank(b); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

func sortedProtos[V any](m map[needs.Protocol]V) []needs.Protocol {
	ps := make([]needs.Protocol, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, compareProto)
	return ps
}
