package boltfile

import (
	"errors"
	"fmt"
)

// ErrDamaged is matched by every [*DamagedError].
var ErrDamaged = errors.New("bbolt file is damaged")

// DamagedError says that a bbolt file failed the checks of [Check] or
// [Open], and why.
type DamagedError struct {
	Path   string // the file
	Reason string // what is wrong, e.g. "file is 20000 bytes, its meta page says 32768"
	Err    error  // the underlying error, if any
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged (%s): restore it from a backup, or move it aside to start with an empty one", e.Path, e.Reason)
}

// Is reports ErrDamaged.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// Unwrap returns the underlying error.
func (e *DamagedError) Unwrap() error { return e.Err }
