package driverplugin

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestErrorCodesRoundTrip: every sentinel a driver returns reaches the
// master as itself, with its message; transport failures mean the driver
// is down.
func TestErrorCodesRoundTrip(t *testing.T) {
	seen := map[codes.Code]bool{}
	for _, e := range errCodes {
		if seen[e.code] {
			t.Errorf("code %s used twice", e.code)
		}
		seen[e.code] = true
		sent := fmt.Errorf("task x: %w", e.err)
		got := errorOf("d", toStatus(sent))
		if !errors.Is(got, e.err) {
			t.Errorf("%v: came back as %v", e.err, got)
		}
		if got.Error() != "driver d: "+sent.Error() {
			t.Errorf("message %q", got.Error())
		}
	}
	other := errorOf("d", toStatus(errors.New("disk on fire")))
	for _, e := range errCodes {
		if errors.Is(other, e.err) {
			t.Errorf("a plain error came back as %v", e.err)
		}
	}
	for _, c := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Canceled} {
		if err := errorOf("d", status.Error(c, "x")); !errors.Is(err, ErrDriverDown) {
			t.Errorf("%s: %v, want ErrDriverDown", c, err)
		}
	}
	if err := errorOf("d", errors.New("not a status")); !errors.Is(err, ErrDriverDown) {
		t.Errorf("non-status error: %v", err)
	}
}
