package needs

import "errors"

// FieldError says which field of a declaration is wrong and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Is makes every *FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Sentinel errors shared by the lanmanager, its API and its clients.
var (
	// ErrInvalid is matched by every validation error.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound means the named need, instance or master does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a need of that name already exists.
	ErrExists = errors.New("already exists")
	// ErrUnauthorized means a missing or wrong token.
	ErrUnauthorized = errors.New("unauthorized")
)
