package needs

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Limits caps what each child of a need may use. The zero value of a field
// means no limit. A master enforces them through cgroups (see
// docs/drivers.md) and bids only for needs whose limits it can enforce.
type Limits struct {
	// Memory is the most memory (RAM, and no swap) the child's processes
	// may use together; past it the kernel's OOM killer kills one of them.
	Memory ByteSize `json:"memory,omitempty"`
	// CPUs is how many CPUs' worth of time the child may use, e.g. 0.5 for
	// half of one (a CFS quota of 50 ms per 100 ms period).
	CPUs float64 `json:"cpus,omitempty"`
	// PIDs is the most processes and threads the child may have at once;
	// a fork past it fails.
	PIDs int `json:"pids,omitempty"`
}

// Bounds of Limits.
const (
	// MinMemory: below 1 MiB not even a shell can start.
	MinMemory = 1 << 20
	// MaxMemory is 1 PiB.
	MaxMemory = 1 << 50
	// MinCPUs is the smallest CFS quota the kernel takes (1 ms per
	// 100 ms period).
	MinCPUs = 0.01
	// MaxCPUs is the most CPUs a Linux kernel can be built for (NR_CPUS).
	MaxCPUs = 8192
	// MaxPIDs is the kernel's own ceiling on pids (PID_MAX_LIMIT on 64-bit).
	MaxPIDs = 4 << 20
)

// IsZero reports whether l asks for no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

// Validate checks every field of l, naming the first bad one as
// "limits.memory", "limits.cpus" or "limits.pids".
func (l *Limits) Validate() error {
	if l == nil {
		return nil
	}
	if l.Memory != 0 && (l.Memory < MinMemory || l.Memory > MaxMemory) {
		return &FieldError{Field: "limits.memory", Msg: fmt.Sprintf("must be between 1M and 1P, got %d bytes", int64(l.Memory))}
	}
	if l.CPUs != 0 && !(l.CPUs >= MinCPUs && l.CPUs <= MaxCPUs) { // NaN fails too
		return &FieldError{Field: "limits.cpus", Msg: fmt.Sprintf("must be between %g and %d, got %g", MinCPUs, MaxCPUs, l.CPUs)}
	}
	if l.PIDs < 0 || l.PIDs > MaxPIDs {
		return &FieldError{Field: "limits.pids", Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxPIDs, l.PIDs)}
	}
	return nil
}

// String lists the limits set, e.g. "memory 256M, cpus 0.5, pids 200";
// "none" when there are none.
func (l Limits) String() string {
	var parts []string
	if l.Memory != 0 {
		parts = append(parts, "memory "+l.Memory.String())
	}
	if l.CPUs != 0 {
		parts = append(parts, "cpus "+strconv.FormatFloat(l.CPUs, 'g', -1, 64))
	}
	if l.PIDs != 0 {
		parts = append(parts, "pids "+strconv.Itoa(l.PIDs))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// ByteSize is a number of bytes that reads and writes as a size string in
// JSON ("256M"); a bare whole number is taken as bytes.
type ByteSize int64

// ParseByteSize reads a size: a whole number, then optionally a unit K, M,
// G, T or P (powers of 1024, as systemd and docker read them; Ki, Mi, Gi,
// Ti and Pi mean the same, and a trailing B is allowed: "512KiB", "1GB"),
// in either case. A bare number is bytes.
func ParseByteSize(s string) (ByteSize, error) {
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q: want a whole number of bytes with an optional unit K, M, G, T or P (e.g. 256M)", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: number out of range", s)
	}
	shift, ok := sizeUnits[strings.ToUpper(s[i:])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (want K, M, G, T or P, optionally as Ki, MiB, ...)", s, s[i:])
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q: out of range", s)
	}
	return ByteSize(n << shift), nil
}

// sizeUnits maps the upper-cased units ParseByteSize takes to their shifts.
var sizeUnits = func() map[string]uint {
	m := map[string]uint{"": 0, "B": 0}
	for i, u := range []string{"K", "M", "G", "T", "P"} {
		for _, suffix := range []string{"", "B", "I", "IB"} {
			m[u+suffix] = uint(10 * (i + 1))
		}
	}
	return m
}()

// String writes the size in the largest unit that divides it: "256M",
// "1536K", "100" (bytes).
func (b ByteSize) String() string {
	n := int64(b)
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		shift uint
		name  string
	}{{50, "P"}, {40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// MarshalJSON writes b as a size string.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a size string or a whole number of bytes. A bad value
// is reported as a *json.UnmarshalTypeError, so that a decoder names the
// field it was found in ("limits.memory").
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		v, err := ParseByteSize(s)
		if err != nil {
			return &json.UnmarshalTypeError{Value: err.Error(), Type: reflect.TypeFor[ByteSize]()}
		}
		*b = v
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil || n < 0 {
		return &json.UnmarshalTypeError{Value: string(data), Type: reflect.TypeFor[ByteSize]()}
	}
	*b = ByteSize(n)
	return nil
}

// Limit returns n's limits; the zero Limits if it has none.
func (n *Need) Limit() Limits {
	if n.Limits == nil {
		return Limits{}
	}
	return *n.Limits
}
