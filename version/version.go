// Package version says which build of berth this is.
//
// A release build sets it at link time:
//
//	go build -ldflags "-X berth/version.Version=v1.2.3" ./cmd/...
//
// Without that, String falls back to what the go command recorded in the
// binary: the module version, else the VCS revision (12 hex digits, with
// "-dirty" when the work tree had changes), else "devel".
package version

import "runtime/debug"

// Version is set at link time; empty in a plain `go build`.
var Version string

// String is this build's version.
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
