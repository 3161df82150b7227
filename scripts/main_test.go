package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The scripts' tests share one pgquorum binary, built on first use, so that
// a package run compiles it once instead of once per script; the scripts
// get it as BIN with NO_BUILD=1.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgquorum-scripts-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// pgquorumBinary returns the path of the shared binary, building it first.
func pgquorumBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		root, _ := filepath.Abs("..")
		path := filepath.Join(binDir, "pgquorum")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/pgquorum")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build ./cmd/pgquorum: %v\n%s", err, out)
			return
		}
		binPath = path
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}
