// Package mustrun lets a test that cannot run on this machine skip, unless
// the environment says it must run here: .ci/run sets BERTH_ROOT=require
// when it runs as root and BERTH_CGROUPS=require where root can write a
// cgroup v2 hierarchy, so that in CI a skipped security test is a failure
// rather than a silent pass. Test only.
package mustrun

import (
	"fmt"
	"os"
	"testing"
)

// Root is the variable for tests that need root.
const Root = "BERTH_ROOT"

// Cgroups is the variable for tests that need a writable cgroup v2
// hierarchy.
const Cgroups = "BERTH_CGROUPS"

// Skip skips t for why, or fails it if env is "require".
func Skip(t testing.TB, env, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv(env) == "require" {
		t.Fatalf("%s (%s=require: this test must run here)", why, env)
	}
	t.Skipf("%s (%s=require turns this skip into a failure)", why, env)
}
