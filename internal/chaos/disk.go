//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// volumeSize is the size of each node's data volume: room for the base
// backup, wal_keep_size and a campaign's rows, small enough to fill.
const volumeSize = "2g"

// mountVolume mounts a tmpfs of volumeSize at n.Dir/vol, the volume the
// node's PostgreSQL data directory (WAL included) and its server log live
// on, so that the disk-full nemesis can fill it.
func mountVolume(n *Node) error {
	vol := filepath.Join(n.Dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", vol, "tmpfs", 0, "size="+volumeSize+",mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", vol, err)
	}
	return nil
}

// unmountVolume copies the server log off the node's volume and unmounts
// it (lazily: a process killed a moment ago may still hold a file).
func unmountVolume(n *Node) {
	vol := filepath.Join(n.Dir, "vol")
	if b, err := os.ReadFile(n.PGDataDir + ".log"); err == nil {
		_ = os.WriteFile(filepath.Join(n.Dir, "pgdata.log"), b, 0o644)
	}
	_ = syscall.Unmount(vol, syscall.MNT_DETACH)
}

// unmountLeftovers unmounts the volumes of a swept run (its directory
// carries the prefix).
func unmountLeftovers(prefix string) {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "tmpfs" && strings.Contains(f[1], "/pqchaos-"+prefix+"/") {
			_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
		}
	}
}

// balloonPath is the file that fills a node's volume.
func balloonPath(n *Node) string { return filepath.Join(n.Dir, "vol", "balloon") }

// fillVolume allocates every free byte of n's volume to a balloon file.
func fillVolume(n *Node) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(n.Dir, "vol"), &st); err != nil {
		return err
	}
	f, err := os.Create(balloonPath(n))
	if err != nil {
		return err
	}
	defer f.Close()
	free := int64(st.Bavail) * st.Bsize
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free); err != nil {
		return fmt.Errorf("fallocate %d bytes: %w", free, err)
	}
	return nil
}

// drainVolume removes the balloon.
func drainVolume(n *Node) error {
	if err := os.Remove(balloonPath(n)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
