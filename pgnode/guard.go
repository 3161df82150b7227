package pgnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fence guard is a small process, separate from the agent, that kills
// the primary's postmaster when the agent stops renewing its deadline. The
// agent arms it with "the lease lets you run for d more" after every
// renewal; if the agent dies, hangs or is SIGSTOPped, the deadline passes
// and the guard kills the postmaster's whole process group. An agent that
// restarts reconnects to the running guard and keeps feeding it, so a
// quick agent restart never stops PostgreSQL.
//
// Protocol, one line each way over a Unix socket:
//
//	arm PID NANOS   -> ok      (kill PID's group unless re-armed within NANOS)
//	disarm          -> ok
//	ping            -> ok

// guardIdleExit is how long a guard with nothing to guard and no agent
// connected stays before it exits.
const guardIdleExit = 5 * time.Second

// guardLookEvery is how often the guard looks whether its postmaster is
// still there and whether it may exit. The kill itself does not wait for
// it: the guard sleeps until the deadline exactly, and every arm or disarm
// wakes it to recompute. (It used to poll every 10 ms, which cost an idle
// primary's host about 4 % of a core.)
const guardLookEvery = time.Second

// guardTarget is the armed postmaster and its deadline.
type guardTarget struct {
	pid       int
	startTime string
	deadline  time.Time
}

// procStartTime reads the start time field of /proc/PID/stat, which tells
// a reused PID from the process that was armed.
func procStartTime(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f[19], nil
}

// RunGuard serves the fence guard on socketPath until ctx ends or the
// guard has had nothing to do for a while. It is the body of the hidden
// `pgquorum fence-guard` command.
func RunGuard(ctx context.Context, socketPath string, log *slog.Logger) error {
	_ = os.Remove(socketPath)
	lis, err := net.Listen("unix", socketPath)
	if err != nil {
		return fmt.Errorf("fence guard: listen on %s: %w", socketPath, err)
	}
	defer lis.Close()
	_ = os.Chmod(socketPath, 0o600)
	return newGuard(log).run(ctx, lis)
}

func newGuard(log *slog.Logger) *guard {
	return &guard{log: log, conns: map[net.Conn]bool{}, idleSince: time.Now(), changed: make(chan struct{}, 1)}
}

// run serves lis until ctx ends or the guard may exit.
func (g *guard) run(ctx context.Context, lis net.Listener) error {
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.conns[c] = true
			g.mu.Unlock()
			go g.serve(c)
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-g.changed:
		}
		exit, next := g.check(time.Now())
		if exit {
			g.log.Info("fence guard exiting: nothing to guard")
			return nil
		}
		timer.Reset(next)
	}
}

type guard struct {
	log       *slog.Logger
	mu        sync.Mutex
	target    *guardTarget
	conns     map[net.Conn]bool
	idleSince time.Time
	// changed wakes the main loop when the target changes.
	changed chan struct{}
	// looks counts checks, for tests.
	looks atomic.Int64
}

// wake makes the main loop recompute its next check at once.
func (g *guard) wake() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// check fires an expired deadline and reports whether the guard may exit
// and, if not, how long it may sleep: until the deadline, or guardLookEvery.
func (g *guard) check(now time.Time) (exit bool, next time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	exit = g.checkLocked(now)
	next = guardLookEvery
	if t := g.target; t != nil {
		next = min(next, max(t.deadline.Sub(now), 0))
	}
	return exit, next
}

// checkLocked kills the armed postmaster if its deadline has passed and
// reports whether the guard has been idle long enough to exit.
func (g *guard) checkLocked(now time.Time) bool {
	g.looks.Add(1)
	if t := g.target; t != nil {
		if st, err := procStartTime(t.pid); err != nil || st != t.startTime {
			g.log.Info("fence guard: armed postmaster is gone", "pid", t.pid)
			g.target = nil
		} else if !now.Before(t.deadline) {
			g.log.Error("fence guard: lease deadline passed without renewal; killing postmaster", "pid", t.pid,
				"late", now.Sub(t.deadline).Round(time.Millisecond))
			if pgid, err := syscall.Getpgid(t.pid); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			_ = syscall.Kill(t.pid, syscall.SIGKILL)
			g.target = nil
		}
	}
	if g.target != nil || len(g.conns) > 0 {
		g.idleSince = now
		return false
	}
	return now.Sub(g.idleSince) > guardIdleExit
}

func (g *guard) serve(c net.Conn) {
	defer func() {
		g.mu.Lock()
		delete(g.conns, c)
		g.idleSince = time.Now()
		g.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		reply := g.handle(strings.Fields(sc.Text()))
		if _, err := fmt.Fprintln(c, reply); err != nil {
			return
		}
	}
}

func (g *guard) handle(f []string) string {
	switch {
	case len(f) == 1 && f[0] == "ping":
		return "ok"
	case len(f) == 1 && f[0] == "disarm":
		g.mu.Lock()
		g.target = nil
		g.mu.Unlock()
		g.wake()
		return "ok"
	case len(f) == 3 && f[0] == "arm":
		pid, err1 := strconv.Atoi(f[1])
		nanos, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || pid <= 1 || nanos < 0 {
			return "error: usage: arm PID NANOS"
		}
		st, err := procStartTime(pid)
		if err != nil {
			return "error: no process " + f[1]
		}
		g.mu.Lock()
		g.target = &guardTarget{pid: pid, startTime: st, deadline: time.Now().Add(time.Duration(nanos))}
		g.mu.Unlock()
		g.wake()
		return "ok"
	}
	return "error: unknown command"
}

// GuardClient is the agent's connection to its fence guard.
type GuardClient struct {
	path  string
	spawn func() error
	mu    sync.Mutex
	conn  net.Conn
	rd    *bufio.Reader
}

// NewGuardClient returns a client for the guard at socketPath; spawn
// starts a guard process when none answers.
func NewGuardClient(socketPath string, spawn func() error) *GuardClient {
	return &GuardClient{path: socketPath, spawn: spawn}
}

// ErrGuard reports that the fence guard could not be reached or refused.
var ErrGuard = errors.New("pgnode: fence guard")

func (c *GuardClient) dial() error {
	if c.conn != nil {
		return nil
	}
	conn, err := net.DialTimeout("unix", c.path, time.Second)
	if err != nil && c.spawn != nil {
		if serr := c.spawn(); serr != nil {
			return fmt.Errorf("%w: start: %v", ErrGuard, serr)
		}
		deadline := time.Now().Add(3 * time.Second)
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			conn, err = net.DialTimeout("unix", c.path, time.Second)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: connect %s: %v", ErrGuard, c.path, err)
	}
	c.conn, c.rd = conn, bufio.NewReader(conn)
	return nil
}

func (c *GuardClient) send(line string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		if err := c.dial(); err != nil {
			return err
		}
		_ = c.conn.SetDeadline(time.Now().Add(time.Second))
		_, err := fmt.Fprintln(c.conn, line)
		var reply string
		if err == nil {
			reply, err = c.rd.ReadString('\n')
		}
		if err != nil {
			c.conn.Close()
			c.conn = nil
			continue
		}
		if reply = strings.TrimSpace(reply); reply != "ok" {
			return fmt.Errorf("%w: %s", ErrGuard, reply)
		}
		return nil
	}
	return fmt.Errorf("%w: no answer on %s", ErrGuard, c.path)
}

// Arm tells the guard to kill pid's process group unless re-armed within d.
func (c *GuardClient) Arm(pid int, d time.Duration) error {
	return c.send(fmt.Sprintf("arm %d %d", pid, d.Nanoseconds()))
}

// Disarm tells the guard to stand down.
func (c *GuardClient) Disarm() error { return c.send("disarm") }

// Close drops the connection; the guard keeps running.
func (c *GuardClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
