package pgnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DataDirInfo describes a data directory as found on disk, without
// connecting to the server.
type DataDirInfo struct {
	// Path is the data directory inspected.
	Path string
	// Exists reports whether the directory exists.
	Exists bool
	// Empty reports an existing directory with no entries.
	Empty bool
	// Initialized reports PG_VERSION and global/pg_control present.
	Initialized bool
	// Version is the content of PG_VERSION ("15").
	Version string
	// SystemIdentifier is pg_controldata's "Database system identifier".
	SystemIdentifier uint64
	// ClusterState is pg_controldata's "Database cluster state", e.g.
	// "in production", "shut down", "shut down in recovery".
	ClusterState string
	// CleanShutdown reports a cluster state of "shut down" or
	// "shut down in recovery" (what pg_rewind needs of its target).
	CleanShutdown bool
	// Timeline is the latest checkpoint's TimeLineID.
	Timeline uint32
	// CheckpointLSN is the latest checkpoint location.
	CheckpointLSN LSN
	// DataChecksums reports data page checksums enabled.
	DataChecksums bool
	// Standby reports standby.signal present.
	Standby bool
	// PIDFile reports postmaster.pid present.
	PIDFile bool
	// PostmasterPID is the PID in postmaster.pid (0 if none).
	PostmasterPID int
	// Running reports a live postmaster for this data directory.
	Running bool
	// StalePIDFile reports postmaster.pid naming a dead (or reaped, or
	// foreign) process.
	StalePIDFile bool
	// PostmasterStatus is postmaster.pid's status line: "starting",
	// "stopping", "ready" or "standby" (PostgreSQL 10+).
	PostmasterStatus string
}

// pidFile is the parsed content of postmaster.pid.
type pidFile struct {
	pid       int
	dataDir   string
	startTime time.Time
	port      int
	shmID     int // -1 if unknown
	status    string
}

func readPIDFile(dataDir string) (pidFile, bool, error) {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pidFile{}, false, nil
	}
	if err != nil {
		return pidFile{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	lines := strings.Split(string(b), "\n")
	pf := pidFile{shmID: -1}
	if len(lines) < 1 {
		return pf, true, nil
	}
	pf.pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 1 {
		pf.dataDir = strings.TrimSpace(lines[1])
	}
	if len(lines) > 2 {
		if sec, err := strconv.ParseInt(strings.TrimSpace(lines[2]), 10, 64); err == nil {
			pf.startTime = time.Unix(sec, 0)
		}
	}
	if len(lines) > 3 {
		pf.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	if len(lines) > 6 {
		if f := strings.Fields(lines[6]); len(f) == 2 {
			if id, err := strconv.Atoi(f[1]); err == nil {
				pf.shmID = id
			}
		}
	}
	if len(lines) > 7 {
		pf.status = strings.TrimSpace(lines[7])
	}
	return pf, true, nil
}

// procState reports whether pid exists and whether it is a zombie.
func procState(pid int) (alive, zombie bool) {
	if pid <= 0 {
		return false, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true, false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		if s[i+2] == 'Z' || s[i+2] == 'X' {
			return false, true
		}
	}
	return true, false
}

// isPostmasterOf reports whether pid is a live process whose working
// directory is dataDir (the postmaster chdirs into its data directory), so
// a recycled PID is not mistaken for the postmaster. When /proc does not
// let us look (agent not root, other user), a live PID is trusted.
func isPostmasterOf(pid int, dataDir string) bool {
	alive, _ := procState(pid)
	if !alive {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return errors.Is(err, fs.ErrPermission)
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		want = filepath.Clean(dataDir)
	}
	return filepath.Clean(cwd) == want
}

// shmAttached returns the number of processes attached to the System V
// shared memory segment shmid, or 0 if it does not exist. After a
// postmaster dies, its children keep the segment attached until they
// notice; a new postmaster refuses to start until they are gone.
func shmAttached(shmid int) int {
	if shmid < 0 {
		return 0
	}
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 7 {
			continue
		}
		if id, _ := strconv.Atoi(fs[1]); id == shmid {
			n, _ := strconv.Atoi(fs[6])
			return n
		}
	}
	return 0
}

// Inspect describes the data directory: whether it exists and holds a
// cluster, its identity, state and timeline from pg_control, whether
// it is set up as a standby, and whether a postmaster runs for it (a
// postmaster.pid naming a dead, zombie or foreign process is reported as
// stale, not running).
func (n *Node) Inspect(ctx context.Context) (DataDirInfo, error) {
	dir := n.cfg.DataDir
	info := DataDirInfo{Path: dir}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return info, nil
	case err != nil:
		return info, fmt.Errorf("read data directory %s: %w", dir, err)
	}
	info.Exists = true
	info.Empty = len(entries) == 0
	if b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION")); err == nil {
		info.Version = strings.TrimSpace(string(b))
	}
	_, ctlErr := os.Stat(filepath.Join(dir, "global", "pg_control"))
	info.Initialized = info.Version != "" && ctlErr == nil
	_, sigErr := os.Stat(filepath.Join(dir, "standby.signal"))
	info.Standby = sigErr == nil

	pf, ok, err := readPIDFile(dir)
	if err != nil {
		return info, err
	}
	if ok {
		info.PIDFile = true
		info.PostmasterPID = pf.pid
		info.PostmasterStatus = pf.status
		info.Running = isPostmasterOf(pf.pid, dir)
		info.StalePIDFile = !info.Running
	}
	if !info.Initialized {
		return info, nil
	}
	cd, err := n.readControl(ctx)
	if err != nil {
		return info, err
	}
	info.SystemIdentifier = cd.systemID
	info.ClusterState = cd.state
	info.CleanShutdown = info.ClusterState == "shut down" || info.ClusterState == "shut down in recovery"
	info.Timeline = cd.timeline
	info.CheckpointLSN = cd.checkpoint
	info.DataChecksums = cd.checksums
	return info, nil
}

// controlDataLines runs pg_controldata and returns its key/value lines.
func (n *Node) controlDataLines(ctx context.Context) (map[string]string, error) {
	out, err := n.os.run(ctx, "/", nil, n.bin("pg_controldata"), "-D", n.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// CheckIdentity verifies that the data directory holds the cluster with the
// expected system identifier. It returns an error wrapping
// ErrForeignDataDir naming the path and both identifiers if not, and
// ErrNotInitialized if there is no cluster. It never changes anything.
func (n *Node) CheckIdentity(ctx context.Context, expected uint64) error {
	info, err := n.Inspect(ctx)
	if err != nil {
		return err
	}
	if !info.Initialized {
		return fmt.Errorf("%w: %s", ErrNotInitialized, info.Path)
	}
	if info.SystemIdentifier != expected {
		return fmt.Errorf("%w: %s has system identifier %d, cluster expects %d", ErrForeignDataDir, info.Path, info.SystemIdentifier, expected)
	}
	return nil
}
