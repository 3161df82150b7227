package pgnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// ProcessState tells a postmaster pgnode stopped from one that died.
type ProcessState int

// Process states.
const (
	// ProcessNone: this Node has neither started nor adopted a postmaster.
	ProcessNone ProcessState = iota
	// ProcessRunning: the postmaster is alive.
	ProcessRunning
	// ProcessStopped: the postmaster exited after pgnode asked it to stop.
	ProcessStopped
	// ProcessCrashed: the postmaster exited without pgnode asking (crash,
	// kill -9, OOM killer, PANIC).
	ProcessCrashed
)

// String returns the state's name.
func (s ProcessState) String() string {
	switch s {
	case ProcessNone:
		return "none"
	case ProcessRunning:
		return "running"
	case ProcessStopped:
		return "stopped"
	case ProcessCrashed:
		return "crashed"
	}
	return fmt.Sprintf("ProcessState(%d)", int(s))
}

// ProcessInfo is the Node's view of its postmaster.
type ProcessInfo struct {
	State ProcessState
	// PID is the postmaster's PID (also after it exited).
	PID int
	// Adopted reports a postmaster this Node found running rather than
	// started; its exit status is unknown.
	Adopted bool
	// StartedAt is when pgnode started or adopted the postmaster.
	StartedAt time.Time
	// ExitedAt is when pgnode noticed the exit.
	ExitedAt time.Time
	// ExitStatus describes how a started postmaster ended, such as
	// "signal: killed" or "exit status 1".
	ExitStatus string
}

// process tracks one postmaster, started (a child, reaped by a goroutine
// that lives exactly as long as the child) or adopted.
type process struct {
	pid       int
	adopted   bool
	startedAt time.Time
	done      chan struct{} // closed once a started child has been reaped
	exitErr   error         // set before done is closed
	exitedAt  time.Time
	stopping  bool // pgnode asked it to stop (guarded by Node.mu)
	logPath   string
	logOffset int64
}

// exited reports whether the postmaster is gone (and reaped, for a child).
func (p *process) exited() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	alive, _ := procState(p.pid)
	return !alive
}

// spawn starts the postmaster as the OS user in its own process group,
// with stdout and stderr appended to the log file, and a goroutine that
// reaps it the moment it exits (so postmaster.pid never names a zombie).
func (n *Node) spawn() (*process, error) {
	lf, err := os.OpenFile(n.cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", n.cfg.LogFile, err)
	}
	defer lf.Close()
	if err := n.os.chown(n.cfg.LogFile); err != nil {
		return nil, err
	}
	off, _ := lf.Seek(0, io.SeekEnd)
	cmd := exec.Command(n.bin("postgres"), "-D", n.cfg.DataDir)
	cmd.Dir = n.cfg.DataDir
	cmd.Env = n.os.env()
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = n.os.procAttr(true)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", ErrStartFailed, n.bin("postgres"), err)
	}
	p := &process{pid: cmd.Process.Pid, startedAt: time.Now(), done: make(chan struct{}), logPath: n.cfg.LogFile, logOffset: off}
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		p.exitErr = err
		p.exitedAt = time.Now()
		stopping := p.stopping
		n.mu.Unlock()
		if stopping {
			n.log.Info("postmaster exited", "pid", p.pid, "status", exitString(err))
		} else {
			n.log.Warn("postmaster exited unexpectedly", "pid", p.pid, "status", exitString(err), "log", p.logPath)
		}
		close(p.done)
	}()
	n.log.Info("started postmaster", "pid", p.pid, "data_dir", n.cfg.DataDir, "log", n.cfg.LogFile)
	return p, nil
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// logTail returns what the postmaster logged since it was started.
func (p *process) logTail(max int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := p.logOffset
	if fi.Size()-start > max {
		start = fi.Size() - max
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return tail(string(b), int(max))
}

// Process returns the Node's view of its postmaster. For an adopted
// postmaster it checks that the PID is still the data directory's
// postmaster.
func (n *Node) Process() ProcessInfo {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return ProcessInfo{State: ProcessNone}
	}
	if p.adopted && p.exitedAt.IsZero() && !isPostmasterOf(p.pid, n.cfg.DataDir) {
		n.mu.Lock()
		if p.exitedAt.IsZero() {
			p.exitedAt = time.Now()
		}
		n.mu.Unlock()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	pi := ProcessInfo{PID: p.pid, Adopted: p.adopted, StartedAt: p.startedAt, ExitedAt: p.exitedAt}
	switch {
	case p.exitedAt.IsZero():
		pi.State = ProcessRunning
	case p.stopping:
		pi.State = ProcessStopped
	default:
		pi.State = ProcessCrashed
	}
	if !p.adopted && !p.exitedAt.IsZero() {
		pi.ExitStatus = exitString(p.exitErr)
	}
	return pi
}

// StopMode selects how the postmaster shuts down.
type StopMode int

// Stop modes, as pg_ctl -m.
const (
	// StopFast disconnects clients, rolls back open transactions and
	// shuts down cleanly (SIGINT). The usual choice.
	StopFast StopMode = iota
	// StopSmart waits for clients to disconnect (SIGTERM).
	StopSmart
	// StopImmediate aborts without a checkpoint (SIGQUIT); crash recovery
	// runs at the next start.
	StopImmediate
)

// String returns the mode's pg_ctl name.
func (m StopMode) String() string {
	switch m {
	case StopFast:
		return "fast"
	case StopSmart:
		return "smart"
	case StopImmediate:
		return "immediate"
	}
	return fmt.Sprintf("StopMode(%d)", int(m))
}

func (m StopMode) signal() syscall.Signal {
	switch m {
	case StopSmart:
		return syscall.SIGTERM
	case StopImmediate:
		return syscall.SIGQUIT
	}
	return syscall.SIGINT
}

// waitExit waits until p is gone or d passes.
func (n *Node) waitExit(ctx context.Context, p *process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	if p.done != nil {
		select {
		case <-p.done:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return p.exited()
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.exited() {
			return true
		}
		select {
		case <-tick.C:
		case <-t.C:
			return p.exited()
		case <-ctx.Done():
			return p.exited()
		}
	}
}

// stopProcess signals p with mode and waits; a fast or smart shutdown that
// outlasts StopTimeout (or ctx) escalates to immediate, then to SIGKILL.
// After SIGKILL it waits for the orphaned backends to detach from shared
// memory, so the next start does not fail.
func (n *Node) stopProcess(ctx context.Context, p *process, mode StopMode) error {
	n.mu.Lock()
	p.stopping = true
	n.mu.Unlock()
	log := n.log.With("pid", p.pid, "mode", mode.String())
	log.Info("stopping postmaster")
	n.dropIdle()
	shm := -1
	if pf, ok, _ := readPIDFile(n.cfg.DataDir); ok && pf.pid == p.pid {
		shm = pf.shmID
	}
	if err := syscall.Kill(p.pid, mode.signal()); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal postmaster %d: %w", p.pid, err)
	}
	wait := n.cfg.StopTimeout
	if mode == StopImmediate {
		wait = 15 * time.Second
	}
	if n.waitExit(ctx, p, wait) {
		n.markExited(p)
		return nil
	}
	if mode != StopImmediate {
		log.Warn("postmaster did not stop in time, escalating to immediate")
		_ = syscall.Kill(p.pid, syscall.SIGQUIT)
		if n.waitExit(context.Background(), p, 15*time.Second) {
			n.markExited(p)
			return nil
		}
	}
	log.Warn("postmaster did not stop, sending SIGKILL")
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	if !n.waitExit(context.Background(), p, 10*time.Second) {
		return fmt.Errorf("%w: postmaster %d of %s survived SIGKILL", ErrStopTimeout, p.pid, n.cfg.DataDir)
	}
	n.markExited(p)
	n.waitOrphans(context.Background(), shm, 10*time.Second)
	return nil
}

func (n *Node) markExited(p *process) {
	n.mu.Lock()
	if p.exitedAt.IsZero() {
		p.exitedAt = time.Now()
	}
	n.mu.Unlock()
}

// waitOrphans waits until no process is attached to the shared memory
// segment of a dead postmaster (its backends exit once they notice).
func (n *Node) waitOrphans(ctx context.Context, shmid int, d time.Duration) {
	deadline := time.Now().Add(d)
	logged := false
	for shmAttached(shmid) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		if !logged {
			n.log.Info("waiting for backends of the previous postmaster to exit", "shmid", shmid)
			logged = true
		}
		time.Sleep(50 * time.Millisecond)
	}
}
