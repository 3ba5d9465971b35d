package cliapp

import (
	"os"
	"path/filepath"
)

// AnnounceDir is where lanmanagers of this user say where their data
// directories are, so that clients and masters on the same machine find
// the token (lan.Announce, lan.FindToken): flag when set, else
// $XDG_RUNTIME_DIR/berth, else <user cache dir>/berth, else "" (none). The
// commands read the environment here, so that berth's packages never do.
func AnnounceDir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "berth")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "berth")
	}
	return ""
}
