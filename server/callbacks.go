package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Callbacks names the scripts run on PostgreSQL events. Each is called as
// `script ACTION ROLE CLUSTER` (Patroni's convention), for example
// `/etc/pgquorum/notify on_role_change primary main`. Empty scripts are
// not run.
type Callbacks struct {
	OnStart      string
	OnStop       string
	OnRestart    string
	OnReload     string
	OnRoleChange string
	// Timeout bounds one run; the script's process group is killed then.
	// Zero means 30 s.
	Timeout time.Duration
}

// cbAction is the first argument of a callback.
type cbAction string

const (
	cbStart      cbAction = "on_start"
	cbStop       cbAction = "on_stop"
	cbRestart    cbAction = "on_restart"
	cbReload     cbAction = "on_reload"
	cbRoleChange cbAction = "on_role_change"
)

// callbackQueue is how many events may wait for the callback runner; more
// are dropped (and logged) rather than slowing the actuator down.
const callbackQueue = 64

type cbEvent struct {
	action cbAction
	role   string
}

// callbackRunner runs callbacks one at a time on a goroutine of its own.
// The actuator only enqueues (fire never blocks), so a slow, failing or
// hanging script can delay other callbacks but never a promotion, a fence
// or a lease renewal.
type callbackRunner struct {
	cfg     Callbacks
	cluster string
	log     *slog.Logger
	queue   chan cbEvent
}

func newCallbackRunner(cfg Callbacks, cluster string, log *slog.Logger) *callbackRunner {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &callbackRunner{cfg: cfg, cluster: cluster, log: log.With("component", "callbacks"), queue: make(chan cbEvent, callbackQueue)}
}

func (r *callbackRunner) script(a cbAction) string {
	switch a {
	case cbStart:
		return r.cfg.OnStart
	case cbStop:
		return r.cfg.OnStop
	case cbRestart:
		return r.cfg.OnRestart
	case cbReload:
		return r.cfg.OnReload
	case cbRoleChange:
		return r.cfg.OnRoleChange
	}
	return ""
}

// fire queues the callback of action, if one is configured. It never
// blocks.
func (r *callbackRunner) fire(action cbAction, role string) {
	if r == nil || r.script(action) == "" {
		return
	}
	select {
	case r.queue <- cbEvent{action: action, role: role}:
	default:
		r.log.Warn("callback dropped: too many callbacks waiting", "action", action, "role", role)
	}
}

// run executes queued callbacks in order until ctx ends; a script still
// running then is killed.
func (r *callbackRunner) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			r.exec(ctx, ev)
		}
	}
}

// exec runs one callback in a process group of its own, so the timeout
// kills whatever the script started too.
func (r *callbackRunner) exec(ctx context.Context, ev cbEvent) {
	script := r.script(ev.action)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, script, string(ev.action), ev.role, r.cluster)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that keeps the output pipe open must not hold us after
	// the kill.
	cmd.WaitDelay = time.Second
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began).Round(time.Millisecond)
	tail := strings.TrimSpace(out.String())
	if len(tail) > 512 {
		tail = "..." + tail[len(tail)-512:]
	}
	switch {
	case err == nil:
		r.log.Info("callback done", "action", ev.action, "role", ev.role, "script", script, "took", took)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.log.Warn("callback killed after its timeout", "action", ev.action, "role", ev.role, "script", script,
			"timeout", r.cfg.Timeout, "output", tail)
	default:
		r.log.Warn("callback failed", "action", ev.action, "role", ev.role, "script", script, "took", took,
			"err", err, "output", tail)
	}
}

// lifecycle fires on_start or on_stop for this node's PostgreSQL, unless
// an operator's restart runs (it fires on_restart once instead).
func (a *actuator) lifecycle(action cbAction) {
	a.mu.Lock()
	quiet := a.quiet
	a.mu.Unlock()
	if !quiet {
		a.s.callbacks.fire(action, a.roleName(a.s.fsm.State()))
	}
}

// noteRole records the role this node converged to and fires
// on_role_change when it differs from the previous one. The first
// convergence after the agent starts only records it: the role did not
// change, the agent did.
func (a *actuator) noteRole(role string) {
	a.mu.Lock()
	prev := a.lastRole
	a.lastRole = role
	a.mu.Unlock()
	if prev != "" && prev != role {
		a.log.Info("role changed", "from", prev, "to", role)
		a.s.callbacks.fire(cbRoleChange, role)
	}
}
