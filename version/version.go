// Package version says which build of berth this is.
//
// A release build sets it at link time:
//
//	go build -ldflags "-X berth/version.Version=v1.2.3" ./cmd/...
//
// Without that, String falls back to what the go command recorded in the
// binary. A build from a tagged module version (go install berth@v1.2.3)
// says that version. A build in a checkout says the VCS revision, 12 hex
// digits with "-dirty" when the work tree had changes: since Go 1.24 the
// go command records a pseudo-version there (v0.0.0-20261205092027-
// bc4e36487ba2), which says less and is no tag. With neither, "devel".
package version

import (
	"regexp"
	"runtime/debug"
)

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

// pseudoVersion matches a Go module pseudo-version (vX.0.0-yyyymmddhhmmss-
// abcdefabcdef, vX.Y.Z-pre.0.yyyymmddhhmmss-..., vX.Y.Z-0.yyyymmddhhmmss-...),
// with the "+dirty" the go command appends to a modified work tree; the
// pattern is golang.org/x/mod/module's.
var pseudoVersion = regexp.MustCompile(`^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

func fromBuildInfo(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v != "" && v != "(devel)" && !pseudoVersion.MatchString(v) {
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
		if v != "" && v != "(devel)" {
			return v // a pseudo-version without VCS details: still better than nothing
		}
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
