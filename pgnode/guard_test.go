package pgnode

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// sleeper is a process in its own group, like a postmaster.
type sleeper struct {
	*exec.Cmd
	done chan struct{}
}

func startSleeper(t *testing.T) *sleeper {
	t.Helper()
	c := exec.Command("sleep", "60")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sleeper{Cmd: c, done: make(chan struct{})}
	go func() { _ = c.Wait(); close(s.done) }()
	t.Cleanup(func() { _ = c.Process.Kill(); <-s.done })
	return s
}

func exited(s *sleeper, within time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(within):
		return false
	}
}

func startGuard(t *testing.T) *GuardClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "g.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = RunGuard(ctx, sock, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	c := NewGuardClient(sock, nil)
	deadline := time.Now().Add(5 * time.Second)
	for c.send("ping") != nil {
		if time.Now().After(deadline) {
			t.Fatal("guard did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(c.Close)
	return c
}

func TestGuard_KillsWhenNotRenewed(t *testing.T) {
	g := startGuard(t)
	p := startSleeper(t)
	if err := g.Arm(p.Process.Pid, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !exited(p, 5*time.Second) {
		t.Fatal("guard did not kill the process after its deadline")
	}
}

func TestGuard_RenewedOrDisarmedKeepsRunning(t *testing.T) {
	g := startGuard(t)
	p := startSleeper(t)
	for range 10 {
		if err := g.Arm(p.Process.Pid, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := g.Disarm(); err != nil {
		t.Fatal(err)
	}
	if exited(p, time.Second) {
		t.Fatal("a renewed, then disarmed, guard killed the process")
	}
}

func TestGuard_SurvivesClientLoss(t *testing.T) {
	g := startGuard(t)
	p := startSleeper(t)
	if err := g.Arm(p.Process.Pid, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	g.Close() // the agent dies: the deadline stands
	if !exited(p, 5*time.Second) {
		t.Fatal("guard forgot its deadline when the agent disconnected")
	}
}

func TestGuard_RefusesBadInput(t *testing.T) {
	g := startGuard(t)
	if err := g.Arm(999999999, time.Second); err == nil {
		t.Fatal("armed a process that does not exist")
	}
	if err := g.send("arm x y"); err == nil {
		t.Fatal("accepted a malformed command")
	}
}

// startGuardOf serves g on a fresh socket, for tests that look inside it.
func startGuardOf(t *testing.T, g *guard) *GuardClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "g.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.run(ctx, lis); close(done) }()
	t.Cleanup(func() { cancel(); <-done; lis.Close() })
	c := NewGuardClient(sock, nil)
	t.Cleanup(c.Close)
	return c
}

// TestGuard_SleepsUntilTheDeadline: an armed guard does not poll; it looks
// a handful of times (once per arm, once at the deadline), kills the
// process at the deadline, and not before. The guard used to look every
// 10 ms, which cost an idle primary's host about 4 % of a core.
func TestGuard_SleepsUntilTheDeadline(t *testing.T) {
	g := newGuard(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := startGuardOf(t, g)
	p := startSleeper(t)
	armed := time.Now()
	if err := c.Arm(p.Process.Pid, 600*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if exited(p, 500*time.Millisecond) {
		t.Fatalf("killed %v after arming, before its 600ms deadline", time.Since(armed))
	}
	if !exited(p, 5*time.Second) {
		t.Fatal("not killed after its deadline")
	}
	if n := g.looks.Load(); n > 5 {
		t.Fatalf("the guard looked %d times in %v; it should sleep until the deadline", n, time.Since(armed))
	}
}

// TestGuard_EarlierDeadlineTakesEffectAtOnce: re-arming with a shorter
// deadline wakes the sleeping guard; it does not keep sleeping towards the
// old deadline or its next periodic look.
func TestGuard_EarlierDeadlineTakesEffectAtOnce(t *testing.T) {
	g := newGuard(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := startGuardOf(t, g)
	p := startSleeper(t)
	if err := c.Arm(p.Process.Pid, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the guard sleeps towards the far deadline
	rearmed := time.Now()
	if err := c.Arm(p.Process.Pid, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !exited(p, guardLookEvery/2) {
		t.Fatalf("not killed %v after a 100ms deadline", time.Since(rearmed))
	}
}
