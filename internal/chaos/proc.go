//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is a long-running process of the harness started in a host's
// namespace: an agent, PgBouncer, the bouncer agent. It can be killed,
// stopped and started again; its output is appended to one log.
type proc struct {
	name    string
	host    *Host
	argv    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts the process unless it runs.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return nil
		}
	}
	lf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "=== chaos: starting %s at %s\n", p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := p.host.Exec(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(lf, "=== chaos: %s exited at %s: %v\n", p.name, time.Now().UTC().Format(time.RFC3339Nano), cmd.ProcessState)
		_ = lf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// signal sends sig to the running process.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s not running", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// stop sends sig (SIGCONT too, in case it was stopped) and waits until
// the process is reaped, SIGKILL after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // frozen: Net.Close thaws and kills
	}
}

// kill is kill -9 and reap.
func (p *proc) kill() { p.stop(syscall.SIGKILL, 10*time.Second) }
