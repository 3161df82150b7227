package pgnode

import (
	"context"
	"io"
	"log/slog"
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
