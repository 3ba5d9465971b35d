package pipes

import (
	"fmt"

	"berth/needs"
)

// TypeServices →M Services: the running set, whole or the needs of it that
// changed. Sent only to masters whose hello set services.
const TypeServices = "services"

// Service is one running instance (state running, not being removed), as
// a proxy dials it.
type Service struct {
	Need     string                 `json:"need"`
	Instance string                 `json:"instance"`
	Alloc    string                 `json:"alloc"`
	Master   string                 `json:"master"`
	Address  string                 `json:"address"`
	Ports    map[needs.Protocol]int `json:"ports,omitempty"`
}

// Validate checks a service entry; field names are relative to it.
func (s *Service) Validate() error {
	if err := needs.ValidateName("need", s.Need); err != nil {
		return err
	}
	need, _, err := needs.ParseInstanceName(s.Instance)
	if err != nil {
		return err
	}
	if need != s.Need {
		return &needs.FieldError{Field: "instance", Msg: fmt.Sprintf("%q is not an instance of need %q", s.Instance, s.Need)}
	}
	if err := ValidateAlloc(s.Alloc); err != nil {
		return err
	}
	if err := needs.ValidateName("master", s.Master); err != nil {
		return err
	}
	if err := validateHost("address", s.Address); err != nil {
		return err
	}
	return validatePorts(s.Ports)
}

func validatePorts(ports map[needs.Protocol]int) error {
	for p, port := range ports {
		if err := p.Validate(); err != nil {
			return &needs.FieldError{Field: "ports", Msg: err.Error()}
		}
		if port < 1 || port > 65535 {
			return &needs.FieldError{Field: "ports." + string(p), Msg: fmt.Sprintf("%d is outside 1-65535", port)}
		}
	}
	return nil
}

// Services is one part of a revision of the running set. A revision is
// sent as Parts frames, Part 0 to Parts-1, one after the other on the link;
// the receiver applies it once it has them all:
//
//   - Full: the instances of all parts are the whole running set, which
//     replaces the receiver's. The first revision on every link is full.
//   - otherwise a diff against revision Base: the instances of all parts
//     are added or replace those of the same name; those in Removed no
//     longer run. Others are unchanged.
type Services struct {
	Rev       uint64    `json:"rev"`
	Base      uint64    `json:"base,omitempty"`
	Full      bool      `json:"full,omitempty"`
	Part      int       `json:"part"`
	Parts     int       `json:"parts"`
	Instances []Service `json:"instances,omitempty"`
	Removed   []string  `json:"removed,omitempty"`
}

// MaxServicesParts bounds the parts of one revision.
const MaxServicesParts = 4096

// Validate checks one part of a services revision.
func (s *Services) Validate() error {
	if s.Rev == 0 {
		return &needs.FieldError{Field: "rev", Msg: "must be > 0"}
	}
	switch {
	case s.Full && s.Base != 0:
		return &needs.FieldError{Field: "base", Msg: fmt.Sprintf("must be 0 in a full set, got %d", s.Base)}
	case s.Full && len(s.Removed) > 0:
		return &needs.FieldError{Field: "removed", Msg: "must be empty in a full set"}
	case !s.Full && (s.Base == 0 || s.Base >= s.Rev):
		return &needs.FieldError{Field: "base", Msg: fmt.Sprintf("a diff's base must be 1-%d (below rev), got %d", s.Rev-1, s.Base)}
	}
	if s.Parts < 1 || s.Parts > MaxServicesParts {
		return &needs.FieldError{Field: "parts", Msg: fmt.Sprintf("must be 1-%d, got %d", MaxServicesParts, s.Parts)}
	}
	if s.Part < 0 || s.Part >= s.Parts {
		return &needs.FieldError{Field: "part", Msg: fmt.Sprintf("must be 0-%d, got %d", s.Parts-1, s.Part)}
	}
	seen := make(map[string]bool, len(s.Instances)+len(s.Removed))
	for i := range s.Instances {
		in := &s.Instances[i]
		if err := in.Validate(); err != nil {
			return fmt.Errorf("instances[%d]: %w", i, err)
		}
		if seen[in.Instance] {
			return &needs.FieldError{Field: fmt.Sprintf("instances[%d].instance", i), Msg: fmt.Sprintf("%q listed twice", in.Instance)}
		}
		seen[in.Instance] = true
	}
	for i, name := range s.Removed {
		if _, _, err := needs.ParseInstanceName(name); err != nil {
			return fmt.Errorf("removed[%d]: %w", i, err)
		}
		if seen[name] {
			return &needs.FieldError{Field: fmt.Sprintf("removed[%d]", i), Msg: fmt.Sprintf("%q listed twice", name)}
		}
		seen[name] = true
	}
	return nil
}
