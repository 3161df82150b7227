package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinEnv names a prebuilt pgquorum binary to use instead of building one.
const BinEnv = "PGQUORUME2E_BIN"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

// Binary returns the path of the pgquorum binary: $PGQUORUME2E_BIN, or a
// plain `go build` of ./cmd/pgquorum made once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(BinEnv); p != "" {
			binPath = p
			return
		}
		binDir, buildErr = os.MkdirTemp("", "pgquorum-e2e-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pgquorum")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/pgquorum/pgquorum/cmd/pgquorum")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build pgquorum: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Main runs the tests of a package that uses this harness and removes the
// binary built for them. Call it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

var (
	reaperOnce sync.Once
	// guardPIDs are fence guard processes (pgquorum fence-guard) the
	// reaper may reap: they outlive their agent and become our children.
	guardMu   sync.Mutex
	guardPIDs = map[int]bool{}
)

// adoptGuard lets the reaper reap the fence guard pid once it exits.
func adoptGuard(pid int) {
	guardMu.Lock()
	guardPIDs[pid] = true
	guardMu.Unlock()
}

// startReaper makes this process the subreaper of its descendants and
// reaps orphaned postgres processes (postmasters of killed agents, their
// backends, pg_ctl's daemon) and fence guards as soon as they exit. It
// only waits for zombies named postgres and for registered guard PIDs, so
// it never steals the exit status of a process an exec.Cmd waits for.
func startReaper() {
	reaperOnce.Do(func() {
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
			return
		}
		go func() {
			for {
				reapPostgresZombies()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	})
}

func reapPostgresZombies() {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, state, ppid, ok := procStat(pid)
		if !ok || ppid != self || state != 'Z' {
			continue
		}
		guardMu.Lock()
		guard := guardPIDs[pid]
		delete(guardPIDs, pid)
		guardMu.Unlock()
		if comm != "postgres" && !guard {
			continue
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// procStat reads the command name, state and parent PID of pid.
func procStat(pid int) (comm string, state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || close+2 >= len(s) {
		return "", 0, 0, false
	}
	fields := strings.Fields(s[close+2:])
	if len(fields) < 2 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(fields[1])
	return s[open+1 : close], fields[0][0], ppid, true
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	_, state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// pidGone reports whether pid no longer exists at all (reaped).
func pidGone(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err != nil && errors.Is(err, syscall.ESRCH)
}

// ReadPostmasterPID returns the PID on the first line of
// dataDir/postmaster.pid, or 0 if there is none.
func ReadPostmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// StopPostmaster stops the postmaster of dataDir by PID: SIGQUIT
// (immediate shutdown), then SIGKILL after grace. It waits until the
// process is gone (reaped) and returns the PID it stopped, or 0.
func StopPostmaster(dataDir string, grace time.Duration) (int, error) {
	pid := ReadPostmasterPID(dataDir)
	if pid <= 0 || !isPostmasterOf(pid, dataDir) {
		return 0, nil
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	if waitGone(pid, grace) {
		return pid, nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 10*time.Second) {
		return pid, nil
	}
	return pid, fmt.Errorf("postmaster %d of %s still there 10s after SIGKILL", pid, dataDir)
}

// KillPostmasterPID sends SIGKILL to pid and waits until it is reaped.
func KillPostmasterPID(pid int) error {
	if pid <= 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 10*time.Second) {
		return fmt.Errorf("postmaster %d not reaped 10s after SIGKILL", pid)
	}
	return nil
}

// waitGone waits until pid is reaped (or, if someone else's zombie,
// at least dead).
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if pidGone(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !pidAlive(pid)
}

// isPostmasterOf reports whether pid runs with dataDir as its working
// directory (a postmaster chdirs into its data directory), so a recycled
// PID is never signalled.
func isPostmasterOf(pid int, dataDir string) bool {
	if !pidAlive(pid) {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	abs, _ := filepath.Abs(dataDir)
	return filepath.Clean(cwd) == filepath.Clean(abs)
}

// tail returns the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return string(buf)
}
