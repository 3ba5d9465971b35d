package pipes_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"berth/needs"
	"berth/pipes"
)

// sentinels is the code table as the wire promises it. A new code must be
// added here too, and existing rows never change (the list is append-only).
var sentinels = []struct {
	code pipes.Code
	err  error
}{
	{pipes.CodeInvalid, needs.ErrInvalid},
	{pipes.CodeNotFound, needs.ErrNotFound},
	{pipes.CodeExists, needs.ErrExists},
	{pipes.CodeUnauthorized, needs.ErrUnauthorized},
	{pipes.CodeInternal, pipes.ErrInternal},
	{pipes.CodeUnsupported, pipes.ErrUnsupported},
	{pipes.CodeExhausted, pipes.ErrExhausted},
	{pipes.CodeStale, pipes.ErrStale},
}

func TestCodesAppendOnly(t *testing.T) {
	codes := pipes.Codes()
	if len(codes) != len(sentinels) {
		t.Fatalf("Codes() has %d codes, the test table %d: update both", len(codes), len(sentinels))
	}
	for i, c := range codes {
		if c != sentinels[i].code {
			t.Errorf("Codes()[%d] = %q, want %q (codes are append-only)", i, c, sentinels[i].code)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%q.Validate: %v", c, err)
		}
	}
	if err := pipes.Code("nope").Validate(); !errors.Is(err, pipes.ErrBadFrame) {
		t.Errorf("unknown code Validate: %v, want ErrBadFrame", err)
	}
}

func TestErrorRoundTrip(t *testing.T) {
	for _, s := range sentinels {
		t.Run(string(s.code), func(t *testing.T) {
			local := fmt.Errorf("reserve http port 16000: %w", s.err)
			we := pipes.ErrorFrom(local)
			if we.Code != s.code || we.Message != local.Error() {
				t.Fatalf("ErrorFrom = %+v, want code %q message %q", we, s.code, local.Error())
			}
			if !errors.Is(we, s.err) {
				t.Errorf("errors.Is(ErrorFrom(err), %v) = false", s.err)
			}

			// Across the wire.
			b, err := pipes.Encode(nil, &pipes.Msg{V: 1, Type: pipes.TypeError, ID: 9, Error: we})
			if err != nil {
				t.Fatal(err)
			}
			m, err := pipes.Decode(bytes.NewReader(b), 0)
			if err != nil {
				t.Fatal(err)
			}
			var wireErr error = m.Error
			if !errors.Is(wireErr, s.err) {
				t.Errorf("errors.Is(wire error %+v, %v) = false", m.Error, s.err)
			}
			for _, other := range sentinels {
				if other.code != s.code && errors.Is(wireErr, other.err) {
					t.Errorf("wire error %q also matches %v", s.code, other.err)
				}
			}
			if got := pipes.ErrorFrom(wireErr); got != m.Error {
				t.Errorf("ErrorFrom(*Error) = %p, want the same error %p", got, m.Error)
			}
			if wrapped := pipes.ErrorFrom(fmt.Errorf("ask master: %w", wireErr)); wrapped.Code != s.code {
				t.Errorf("ErrorFrom(wrapped wire error).Code = %q", wrapped.Code)
			}
		})
	}
}

func TestErrorFromOthers(t *testing.T) {
	tests := []struct {
		err  error
		want pipes.Code
	}{
		{&needs.FieldError{Field: "pid", Msg: "must be > 0"}, pipes.CodeInvalid},
		{fmt.Errorf("read: %w", pipes.ErrBadFrame), pipes.CodeInvalid},
		{fmt.Errorf("read: %w", pipes.ErrFrameTooLarge), pipes.CodeInvalid},
		{errors.New("disk on fire"), pipes.CodeInternal},
	}
	for _, tt := range tests {
		if got := pipes.ErrorFrom(tt.err); got.Code != tt.want || got.Message != tt.err.Error() {
			t.Errorf("ErrorFrom(%v) = %+v, want code %q", tt.err, got, tt.want)
		}
	}
	// An unknown code, as a newer peer might send, unwraps to ErrInternal.
	if err := (&pipes.Error{Code: "brand_new", Message: "m"}); !errors.Is(err, pipes.ErrInternal) {
		t.Errorf("unknown code does not unwrap to ErrInternal")
	}
}
