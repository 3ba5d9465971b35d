package main

import (
	"strings"
	"testing"
)

// TestIPCFlags: every bad IPC flag of serve, dev and ipc serve exits 2 and
// names the flag, before anything listens.
func TestIPCFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--ipc-listen", "nonsense"}, "--ipc-listen"},
		{[]string{"dev", "--ipc-listen", "127.0.0.1"}, "--ipc-listen"},
		{[]string{"serve", "--ipc-token", "a b"}, "--ipc-token"},
		{[]string{"serve", "--ipc-token", "x?t=1"}, "--ipc-token"},
		{[]string{"serve", "--token", "same", "--ipc-token", "same"}, "must not be the API token"},
		{[]string{"ipc", "serve", "--listen", "nonsense"}, "--listen"},
		{[]string{"ipc", "serve", "--token", "a&b"}, "--token"},
		{[]string{"ipc", "serve", "extra"}, "extra"},
	} {
		_, errOut, code := runCode(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, %q; want 2 naming %s", tt.args, code, errOut, tt.want)
		}
	}
}
