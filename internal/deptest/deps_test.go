package deptest

import (
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// anything marks a package that may import every package of ours but the
// test-only ones and the commands.
const anything = "*"

// allowed lists, for every package of ours, the packages of ours its
// non-test files may import, and why. A new package must be added here.
var allowed = map[string]struct {
	may []string
	why string
}{
	"berth/needs":      {nil, "the shared vocabulary imports nothing of ours"},
	"berth/version":    {nil, "a build-time string"},
	"berth/boltfile":   {nil, "boltfile knows bbolt only"},
	"berth/portoffice": {[]string{"berth/boltfile", "berth/needs"}, "leaves do not know each other"},
	"berth/spawn":      {[]string{"berth/needs"}, "leaves do not know each other; master turns leases into a Spec"},
	"berth/pipes":      {[]string{"berth/needs"}, "leaves do not know each other"},
	"berth/child":      {[]string{"berth/needs", "berth/pipes"}, "the child SDK speaks the wire only"},
	"berth/lifecycle":  {[]string{"berth/needs", "berth/pipes"}, "the state machine knows the vocabulary and the frames it asks to send"},
	"berth/lan":        {[]string{"berth/boltfile", "berth/gateway", "berth/internal/httplimit", "berth/ipchub", "berth/lifecycle", "berth/needs", "berth/pipes"}, "the lanmanager runs no children and leases no ports"},
	"berth/ipchub":     {nil, "the IPC hub speaks a foreign protocol (acebase-ipc-server) and needs none of our vocabulary"},
	"berth/gateway":    {nil, "the gateway is told how to pick an instance; it knows neither the lanmanager nor the master"},
	"berth/mesh":       {[]string{"berth/needs"}, "the proxy is told its backends; it knows neither the lanmanager nor the master"},
	"berth/sandbox":    {[]string{"berth/needs", "berth/spawn"}, "the bwrap sandbox rewrites a spawn.Spec and starts it with spawn.Exec; it knows neither the master nor the plugin framework"},
	"berth/master": {[]string{"berth/boltfile", "berth/driverplugin", "berth/gateway", "berth/internal/httplimit", "berth/mesh", "berth/needs", "berth/pipes", "berth/portoffice", "berth/spawn"},
		"masters speak to the lanmanager only over the wire; they run the mesh proxies and external drivers"},
	"berth/driverplugin":                 {[]string{"berth/driverplugin/driverpb", "berth/spawn"}, "the driver contract, imported by the master and by driver binaries; it speaks to spawn only"},
	"berth/driverplugin/driverpb":        {nil, "generated code of driver.proto"},
	"berth/examples/driver-rawexec":      {[]string{"berth/driverplugin", "berth/spawn"}, "a driver binary links the contract and spawn"},
	"berth/examples/hello":               {[]string{"berth/child", "berth/needs", "berth/pipes"}, "children link only the SDK"},
	"berth/examples/gateway":             {[]string{"berth/child", "berth/needs", "berth/pipes"}, "children link only the SDK"},
	"berth/cmd/internal/cliapp":          {[]string{"berth/lan", "berth/needs", "berth/pipes", "berth/version"}, "what the two commands share"},
	"berth/cmd/internal/clitest":         {[]string{"berth/cmd/internal/cliapp"}, "test only: what the two commands' tests share"},
	"berth/cmd/lanmanager":               {[]string{anything}, "commands sit on top"},
	"berth/cmd/master":                   {[]string{anything}, "commands sit on top"},
	"berth/cmd/berth-driver-bwrap":       {[]string{"berth/driverplugin", "berth/sandbox", "berth/version"}, "a driver binary links the contract and its sandbox"},
	benches:                              {[]string{anything}, "benchmarks drive the whole system"},
	"berth/e2e":                          {nil, "the end-to-end tests run the binaries; only their test files import"},
	"berth/e2e/gwservice":                {[]string{"berth/child", "berth/needs", "berth/pipes"}, "a child of the end-to-end tests links only the SDK"},
	"berth/e2e/hotservice":               {[]string{"berth/child", "berth/needs", "berth/pipes"}, "a child of the end-to-end tests links only the SDK"},
	"berth/internal/httplimit":           {nil, "the limits every HTTP server of ours applies"},
	"berth/internal/httplimit/limittest": {nil, "test only"},
	"berth/internal/mustrun":             {nil, "test only"},
	"berth/internal/deptest":             {nil, "test only"},
	"berth/internal/freeports":           {nil, "test only"},
	"berth/internal/leakcheck":           {nil, "test only"},
	"berth/internal/smalldisk":           {nil, "test only"},
}

// benches are the packages under bench/: tools that drive the whole
// system, like commands.
const benches = "berth/bench/"

// testOnly are imported by test files only.
var testOnly = []string{"berth/cmd/internal/clitest", "berth/internal/mustrun", "berth/internal/httplimit/limittest", "berth/internal/deptest", "berth/internal/freeports", "berth/internal/leakcheck", "berth/internal/smalldisk"}

// rpcOnly are the outside packages only the driver contract may import
// directly (docs/drivers.md): the rest of berth never sees gRPC or
// go-plugin.
var rpcOnly = []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/hashicorp/go-plugin", "github.com/hashicorp/go-hclog"}

// rpcAllowed may import rpcOnly packages.
var rpcAllowed = []string{"berth/driverplugin", "berth/driverplugin/driverpb"}

// noIO are the standard packages needs and lifecycle may not import: they
// do no I/O.
var noIO = []string{"os", "net", "io/fs", "syscall"}

// TestImportAllowlist checks every package's imports of ours against
// allowed, and that needs does no I/O.
func TestImportAllowlist(t *testing.T) {
	for _, v := range violations(listImports(t)) {
		t.Error(v)
	}
}

// TestViolationsFound: each rule reports a breach (the check can fail).
func TestViolationsFound(t *testing.T) {
	base := map[string][]string{}
	for pkg := range allowed {
		base[pkg] = nil
	}
	delete(base, benches)
	base["berth/bench/startup"] = []string{"berth/lan", "berth/needs"}
	for _, tt := range []struct {
		name string
		pkg  string
		deps []string
		want string
	}{
		{"arrow up", "berth/lan", []string{"berth/master"}, "berth/lan imports berth/master; it may import only"},
		{"leaves", "berth/spawn", []string{"berth/portoffice"}, "berth/spawn imports berth/portoffice"},
		{"needs imports ours", "berth/needs", []string{"berth/pipes"}, "berth/needs imports berth/pipes"},
		{"needs os", "berth/needs", []string{"os"}, "berth/needs imports os: it does no I/O"},
		{"lifecycle net", "berth/lifecycle", []string{"berth/needs", "net"}, "berth/lifecycle imports net: it does no I/O"},
		{"needs net/http", "berth/needs", []string{"net/http"}, "berth/needs imports net/http"},
		{"needs io/fs", "berth/needs", []string{"io/fs"}, "berth/needs imports io/fs"},
		{"test helper in code", "berth/master", []string{"berth/internal/freeports"}, "only tests may import"},
		{"command imports a command", "berth/cmd/master", []string{"berth/cmd/lanmanager"}, "imports the command"},
		{"new package", "berth/newthing", nil, "berth/newthing is not in the allowlist"},
		{"grpc outside the contract", "berth/master", []string{"google.golang.org/grpc"}, "only [berth/driverplugin"},
		{"go-plugin outside the contract", "berth/spawn", []string{"github.com/hashicorp/go-plugin"}, "the driver contract"},
		{"bench imports a command", "berth/bench/x", []string{"berth/cmd/master"}, "imports the command"},
	} {
		imports := maps.Clone(base)
		imports[tt.pkg] = tt.deps
		got := violations(imports)
		if len(got) != 1 || !strings.Contains(got[0], tt.want) {
			t.Errorf("%s: violations %q, want one containing %q", tt.name, got, tt.want)
		}
	}
	if got := violations(base); len(got) != 0 {
		t.Errorf("violations of the allowlist itself: %q", got)
	}
	gone := maps.Clone(base)
	delete(gone, "berth/version")
	if got := violations(gone); len(got) != 1 || !strings.Contains(got[0], "go list does not show") {
		t.Errorf("a stale allowlist entry: violations %q", got)
	}
	// Commands and benchmarks may import anything else of ours.
	ok := maps.Clone(base)
	ok["berth/cmd/master"] = []string{"berth/lan", "berth/master", "berth/cmd/internal/cliapp", "fmt"}
	if got := violations(ok); len(got) != 0 {
		t.Errorf("a command's imports: violations %q", got)
	}
}

// violations returns a sentence for each import that breaks the allowlist.
func violations(imports map[string][]string) []string {
	var out []string
	for pkg, deps := range imports {
		rule, ok := allowed[pkg]
		if !ok && strings.HasPrefix(pkg, benches) {
			rule, ok = allowed[benches], true
		}
		if !ok {
			out = append(out, fmt.Sprintf("%s is not in the allowlist of internal/deptest: add it with the packages of ours it may import", pkg))
			continue
		}
		for _, dep := range deps {
			for _, r := range rpcOnly {
				if (dep == r || strings.HasPrefix(dep, r+"/")) && !slices.Contains(rpcAllowed, pkg) {
					out = append(out, fmt.Sprintf("%s imports %s: only %v may (the driver contract)", pkg, dep, rpcAllowed))
				}
			}
			if !strings.HasPrefix(dep, "berth/") {
				continue
			}
			switch {
			case slices.Contains(testOnly, dep):
				out = append(out, fmt.Sprintf("%s imports %s, which only tests may import", pkg, dep))
			case slices.Contains(rule.may, anything):
				if strings.HasPrefix(dep, "berth/cmd/") && dep != "berth/cmd/internal/cliapp" {
					out = append(out, fmt.Sprintf("%s imports the command %s", pkg, dep))
				}
			case !slices.Contains(rule.may, dep):
				out = append(out, fmt.Sprintf("%s imports %s; it may import only %v (%s)", pkg, dep, rule.may, rule.why))
			}
		}
	}
	for pkg := range allowed {
		if _, ok := imports[pkg]; !ok && pkg != benches {
			out = append(out, fmt.Sprintf("the allowlist names %s, which go list does not show: remove it", pkg))
		}
	}
	for _, pkg := range []string{"berth/needs", "berth/lifecycle"} {
		for _, dep := range imports[pkg] {
			for _, bad := range noIO {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					out = append(out, fmt.Sprintf("%s imports %s: it does no I/O", pkg, dep))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// listImports returns the imports of the non-test files of every package
// of the module, by go list.
func listImports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "berth/...").Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list berth/...: %v\n%s", err, msg)
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			imports[f[0]] = f[1:]
		}
	}
	if len(imports) < 10 {
		t.Fatalf("go list showed %d packages:\n%s", len(imports), out)
	}
	return imports
}
