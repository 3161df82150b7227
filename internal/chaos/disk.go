//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// volumeSize is the size of each node's data volume: room for the base
// backup, wal_keep_size and a campaign's rows, small enough to fill.
const volumeSize = 2 << 30

// mountVolume gives node n its data volume at n.Dir/vol, where its
// PostgreSQL data directory (WAL included) and server log live: an ext4
// file system on a loop device whose backing file sits on a tmpfs of its
// own at n.Dir/img (memory-fast, like the tmpfs volumes before it). A
// loop device is what the blkio throttle can stall (FACTS.md: not a
// tmpfs), and a small file system is what the disk-full nemesis fills.
// The caller unmounts with unmountVolume even after an error.
func mountVolume(n *Node) error {
	img, vol := filepath.Join(n.Dir, "img"), filepath.Join(n.Dir, "vol")
	for _, d := range []string{img, vol} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount("tmpfs", img, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", volumeSize+(64<<20))); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", img, err)
	}
	file := filepath.Join(img, "vol.ext4")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	err = f.Truncate(volumeSize)
	_ = f.Close()
	if err != nil {
		return err
	}
	// -m 0: no blocks reserved for root, so the balloon (made by root)
	// and PostgreSQL see the same free space.
	if err := run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "pqchaos", file); err != nil {
		return err
	}
	// mount -o loop attaches a loop device with autoclear: it detaches
	// when the file system is finally unmounted.
	if err := run("mount", "-t", "ext4", "-o", "loop,noatime", file, vol); err != nil {
		return err
	}
	return os.Chmod(vol, 0o755)
}

// volumeDevice is the "major:minor" of the loop device under n's volume.
func volumeDevice(n *Node) (string, error) {
	vol := filepath.Join(n.Dir, "vol")
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// ID parent major:minor root mountpoint ...
		if len(f) > 4 && f[4] == vol {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("%s is not mounted", vol)
}

// unmountVolume copies the server log off the node's volume and unmounts
// it and its backing tmpfs (lazily: a process killed a moment ago may
// still hold a file; the loop device detaches once the last one is gone).
func unmountVolume(n *Node) {
	if b, err := os.ReadFile(n.PGDataDir + ".log"); err == nil {
		_ = os.WriteFile(filepath.Join(n.Dir, "pgdata.log"), b, 0o644)
	}
	_ = syscall.Unmount(filepath.Join(n.Dir, "vol"), syscall.MNT_DETACH)
	_ = syscall.Unmount(filepath.Join(n.Dir, "img"), syscall.MNT_DETACH)
}

// unmountLeftovers unmounts the volumes of a swept run (its directory
// carries the prefix), file systems before the tmpfs they live on, and
// detaches loop devices left behind.
func unmountLeftovers(prefix string) {
	b, _ := os.ReadFile("/proc/mounts")
	var tmpfs []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.Contains(f[1], "/pqchaos-"+prefix+"/") {
			continue
		}
		if f[2] == "tmpfs" {
			tmpfs = append(tmpfs, f[1])
			continue
		}
		_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
	}
	for _, m := range tmpfs {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.Contains(f[1], "/pqchaos-"+prefix+"/") {
			_ = run("losetup", "-d", f[0])
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
	// ext4 needs some of the free blocks for the balloon's own extent
	// tree: allocate in halving chunks down to one block.
	var off int64
	chunk := int64(st.Bavail) * st.Bsize
	for chunk >= st.Bsize {
		err := syscall.Fallocate(int(f.Fd()), 0, off, chunk)
		switch {
		case err == nil:
			off += chunk
		case err == syscall.ENOSPC:
			chunk /= 2
		default:
			return fmt.Errorf("fallocate %d bytes at %d: %w", chunk, off, err)
		}
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
