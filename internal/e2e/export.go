package e2e

// StartReaper makes the test process the child subreaper of its
// descendants and reaps orphaned postmasters and registered fence guards.
// Harnesses that start agents themselves (internal/chaos, in network
// namespaces) call it once before their first agent.
func StartReaper() { startReaper() }

// AdoptGuard lets the reaper reap the fence guard pid once it exits: a
// guard outlives its killed agent and becomes the test process's child.
func AdoptGuard(pid int) { adoptGuard(pid) }

// IsGuard reports whether pid runs `pgquorum fence-guard`, so a recycled
// PID read from a pid file is never signalled.
func IsGuard(pid int) bool { return pidAlive(pid) && isGuard(pid) }

// IsPostmasterOf reports whether pid is alive and runs in dataDir.
func IsPostmasterOf(pid int, dataDir string) bool { return isPostmasterOf(pid, dataDir) }

// Tail returns the last n bytes of the file at path.
func Tail(path string, n int64) string { return tail(path, n) }
