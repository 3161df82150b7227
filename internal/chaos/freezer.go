//go:build chaos

package chaos

import (
	"errors"
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

// blkioRoot is the cgroup v1 blkio hierarchy, whose throttle stalls a
// loop device.
const blkioRoot = "/sys/fs/cgroup/blkio"

// throttleFiles are the blkio limits a stall sets on one device.
var throttleFiles = []string{"blkio.throttle.write_bps_device", "blkio.throttle.read_bps_device",
	"blkio.throttle.write_iops_device", "blkio.throttle.read_iops_device"}

// Stall moves every process of h's namespace into the blkio cgroup
// <prefix>-<host> and throttles its reads and writes on device dev
// ("major:minor") to 1 byte and 1 operation per second: a disk that no
// longer answers, for those processes only. Children (PostgreSQL's
// backends, a restarted postmaster) inherit the cgroup. Only I/O a process
// issues itself is throttled (cgroup v1 does not charge the kernel's
// background writeback), which is what an fsync or a WAL flush does.
func (n *Net) Stall(h *Host, dev string) error {
	dir := filepath.Join(blkioRoot, h.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, pid := range h.Pids() {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
	for _, f := range throttleFiles {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(dev+" 1"), 0o644); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// Unstall lifts the limits of Stall (the processes stay in the cgroup;
// I/O queued behind the throttle is dispatched at once).
func (n *Net) Unstall(h *Host, dev string) error {
	dir := filepath.Join(blkioRoot, h.NS)
	var errs []error
	for _, f := range throttleFiles {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(dev+" 0"), 0o644); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups thaws and removes the freezer and blkio cgroups of prefix,
// moving any process still in one back to the root cgroup first.
func removeCgroups(prefix string) {
	for _, root := range []string{freezerRoot, blkioRoot} {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix+"-") {
				continue
			}
			dir := filepath.Join(root, e.Name())
			if root == freezerRoot {
				_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0o644)
			} else {
				unthrottle(dir)
			}
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(f), 0o644)
			}
			_ = os.Remove(dir)
		}
	}
}

// unthrottle removes every limit a blkio cgroup holds.
func unthrottle(dir string) {
	for _, f := range throttleFiles {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		for _, line := range strings.Split(string(b), "\n") {
			if dev, _, ok := strings.Cut(line, " "); ok {
				_ = os.WriteFile(filepath.Join(dir, f), []byte(dev+" 0"), 0o644)
			}
		}
	}
}
