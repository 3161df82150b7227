package fsm

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// impureImports are packages the FSM must not use (DESIGN.md invariant 6):
// clocks, randomness, and I/O with the outside world. A path also matches
// its sub-packages ("net" forbids "net/http").
var impureImports = []string{
	"time", "math/rand", "crypto/rand", "os", "net", "syscall", "io/ioutil",
}

// purityViolations lists what makes one Go source file impure: forbidden
// imports and go statements.
func purityViolations(fset *token.FileSet, file *ast.File) []string {
	var out []string
	for _, imp := range file.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		for _, bad := range impureImports {
			if path == bad || strings.HasPrefix(path, bad+"/") {
				out = append(out, fmt.Sprintf("%s: imports %q", fset.Position(imp.Pos()), path))
			}
		}
	}
	ast.Inspect(file, func(n ast.Node) bool {
		if g, ok := n.(*ast.GoStmt); ok {
			out = append(out, fmt.Sprintf("%s: starts a goroutine", fset.Position(g.Pos())))
		}
		return true
	})
	return out
}

// TestPurity_NoClockRandomIOOrGoroutines parses the package's non-test
// files and fails if any of them can reach a clock, randomness, the
// outside world or a goroutine: Apply must be a function of the log entry
// and the state alone.
func TestPurity_NoClockRandomIOOrGoroutines(t *testing.T) {
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		checked++
		for _, v := range purityViolations(fset, file) {
			t.Errorf("invariant 6 (the FSM is pure): %s", v)
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d files: is the test running in the fsm directory?", checked)
	}
}

// TestPurity_GuardCatches checks that the guard itself notices each kind
// of violation, so that it cannot silently pass.
func TestPurity_GuardCatches(t *testing.T) {
	tests := []struct {
		name, src string
		want      int
	}{
		{"clean", "package fsm\nimport (\"fmt\"; \"sync\"; \"io\")\nvar _ = fmt.Sprint\nvar _ sync.Mutex\nvar _ io.Reader", 0},
		{"time", "package fsm\nimport \"time\"\nvar _ = time.Now", 1},
		{"math/rand/v2", "package fsm\nimport \"math/rand/v2\"\nvar _ = rand.Int", 1},
		{"crypto/rand", "package fsm\nimport cr \"crypto/rand\"\nvar _ = cr.Reader", 1},
		{"os/exec", "package fsm\nimport \"os/exec\"\nvar _ = exec.Command", 1},
		{"net/http", "package fsm\nimport _ \"net/http\"", 1},
		{"not a prefix", "package fsm\nimport _ \"timeout\"\nimport _ \"osmium\"", 0},
		{"go statement", "package fsm\nfunc f() { go func() {}() }", 1},
		{"nested go", "package fsm\nfunc f() { if true { for { go g() } } }\nfunc g() {}", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, "x.go", tc.src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			if got := purityViolations(fset, file); len(got) != tc.want {
				t.Fatalf("violations %q, want %d", got, tc.want)
			}
		})
	}
}
