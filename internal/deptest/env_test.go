package deptest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// envReaders are the calls that read the process's environment.
var envReaders = []string{"os.Getenv", "os.LookupEnv", "os.Environ", "os.ExpandEnv", "syscall.Getenv", "syscall.Environ"}

// envAllowed may read the environment: the commands, which pass what they
// read down through options (child/doc.go: berth's other packages never
// read it), the child SDK, whose contract is the environment, and
// programs and helpers outside the product.
var envAllowed = []string{"berth/cmd/", "berth/child", "berth/bench/", "berth/examples/", "berth/e2e", "berth/internal/mustrun"}

// TestEnvironmentReadAtTheEdges: no package of ours but those reads the
// environment in its code (tests may).
func TestEnvironmentReadAtTheEdges(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Dir}}{{range .GoFiles}} {{.}}{{end}}", "berth/...").Output()
	if err != nil {
		t.Fatalf("go list berth/...: %v", err)
	}
	files := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 || slices.ContainsFunc(envAllowed, func(p string) bool { return strings.HasPrefix(f[0], p) }) {
			continue
		}
		for _, name := range f[2:] {
			files++
			path := filepath.Join(f[1], name)
			for _, call := range envCalls(t, path, nil) {
				t.Errorf("%s: %s reads the environment (%s); pass the value in through the package's options from cmd/", f[0], path, call)
			}
		}
	}
	if files < 50 {
		t.Fatalf("only %d files checked:\n%s", files, out)
	}
}

// envCalls returns the environment reads in a file (src, if not nil).
func envCalls(t *testing.T, path string, src any) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	var found []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && slices.Contains(envReaders, id.Name+"."+sel.Sel.Name) {
			found = append(found, fmt.Sprintf("%s at %s", id.Name+"."+sel.Sel.Name, fset.Position(sel.Pos())))
		}
		return true
	})
	return found
}

// TestEnvCallsFound: the check sees a read (it can fail).
func TestEnvCallsFound(t *testing.T) {
	src := "package p\nimport \"os\"\nfunc f() string { return os.Getenv(\"X\") }\nvar g = os.Environ\n"
	if got := envCalls(t, "p.go", src); len(got) != 2 {
		t.Errorf("found %q, want os.Getenv and os.Environ", got)
	}
}
