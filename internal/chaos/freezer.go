//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// freezerRoot is the cgroup v1 freezer hierarchy (this machine has no
// unified cgroup v2 freezer).
const freezerRoot = "/sys/fs/cgroup/freezer"

// Freeze moves every process of h's namespace into the freezer cgroup
// <prefix>-<host> and freezes it: the whole host stops at once, as a
// hung VM would. Processes started later in the namespace are not
// frozen, which is why the harness freezes only for a bounded time.
func (n *Net) Freeze(h *Host) error {
	dir := filepath.Join(freezerRoot, h.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, pid := range h.Pids() {
		// A process that exited meanwhile is not an error.
		_ = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0o644); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(dir, "freezer.state"))
		if strings.TrimSpace(string(b)) == "FROZEN" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("freezer %s did not reach FROZEN", dir)
}

// Thaw thaws h's freezer cgroup (the processes stay in it).
func (n *Net) Thaw(h *Host) error {
	dir := filepath.Join(freezerRoot, h.NS)
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0o644)
}

// removeCgroups thaws and removes the freezer cgroups of prefix, moving
// any process still in one back to the root cgroup first.
func removeCgroups(prefix string) {
	entries, _ := os.ReadDir(freezerRoot)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix+"-") {
			continue
		}
		dir := filepath.Join(freezerRoot, e.Name())
		_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0o644)
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			_ = os.WriteFile(filepath.Join(freezerRoot, "cgroup.procs"), []byte(f), 0o644)
		}
		_ = os.Remove(dir)
	}
}
