package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"revision", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0d0dcb7aabbccddeeff00112233445566778899a"}, {Key: "vcs.modified", Value: "false"}}}, "0d0dcb7aabbc"},
		{"dirty revision", debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0d0dcb7aabbccddeeff"}, {Key: "vcs.modified", Value: "true"}}}, "0d0dcb7aabbc-dirty"},
		{"nothing", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"empty", debug.BuildInfo{}, "devel"},
		// Go 1.24 and later record a pseudo-version for a build in a checkout.
		{"pseudo-version in a checkout", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205092027-bc4e36487ba2"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "bc4e36487ba21621ed849c7f7eb83bf73efc485f"}, {Key: "vcs.modified", Value: "false"}}}, "bc4e36487ba2"},
		{"dirty pseudo-version in a checkout", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205092027-bc4e36487ba2+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "bc4e36487ba21621ed849c7f7eb83bf73efc485f"}, {Key: "vcs.modified", Value: "true"}}}, "bc4e36487ba2-dirty"},
		{"pseudo-version after a tag", debug.BuildInfo{Main: debug.Module{Version: "v1.4.1-0.20261205092027-bc4e36487ba2"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "bc4e36487ba21621ed849c7f7eb83bf73efc485f"}}}, "bc4e36487ba2"},
		{"pseudo-version after a pre-release", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0-rc.1.0.20261205092027-bc4e36487ba2"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "bc4e36487ba21621ed849c7f7eb83bf73efc485f"}}}, "bc4e36487ba2"},
		{"pseudo-version without VCS details", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205092027-bc4e36487ba2"}}, "v0.0.0-20261205092027-bc4e36487ba2"},
		{"tag wins over the revision", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "bc4e36487ba21621ed849c7f7eb83bf73efc485f"}}}, "v1.4.0"},
		{"pre-release tag", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0-rc.1"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "bc4e36487ba21621ed849c7f7eb83bf73efc485f"}}}, "v1.4.0-rc.1"},
	}
	for _, tt := range tests {
		if got := fromBuildInfo(&tt.bi); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestLinkTimeVersionWins(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.9.9"
	if got := String(); got != "v9.9.9" {
		t.Errorf("String() = %q, want the link-time version", got)
	}
}
