package server

import (
	"context"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
)

// Inspecting the data directory reads a handful of files and /proc, and
// ran pg_controldata (a process per call) before pgnode read pg_control
// itself; it still does where pg_control's layout is unknown. The
// actuator inspected every convergence round and the probe loop every
// few: then most of an idle node's CPU and tens of milliseconds on a busy
// host in front of every reaction. While this agent's own postmaster runs,
// nothing but the actuator changes what Inspect reports (initialized,
// standby.signal, the system identifier), so a recent inspection is
// reused; every action that changes the server or its files drops it
// (changeTracker), and an inspection that raced such an action is not
// kept (infoGen).

// infoMaxAge bounds how long an inspection of a running server is reused.
// It is a safety net only (every change the actuator makes drops the
// cache, and a server that stops answering is inspected at once), so it
// is long: at 5 loop_waits the pg_controldata runs, a fork and exec of
// the agent each, were a tenth of an idle node's CPU (reading pg_control
// directly costs microseconds, but not every build's layout is known).
func (a *actuator) infoMaxAge() time.Duration { return max(inspectReuse, 5*a.s.opts.Timing.LoopWait) }

// inspectReuse is the shortest infoMaxAge.
const inspectReuse = 30 * time.Second

// inspect returns the data directory's state: the cached inspection while
// it is younger than infoMaxAge, no action ran since, and the postmaster
// it saw is this agent's running child; a fresh one otherwise.
func (a *actuator) inspect(ctx context.Context) (pgnode.DataDirInfo, error) {
	a.mu.Lock()
	info, at, gen := a.info, a.infoAt, a.infoGen
	a.mu.Unlock()
	if proc := a.pg.Process(); info.Running && proc.State == pgnode.ProcessRunning && proc.PID == info.PostmasterPID &&
		!at.IsZero() && time.Since(at) < a.infoMaxAge() {
		return info, nil
	}
	info, err := a.pg.Inspect(ctx)
	if err != nil {
		return info, err
	}
	a.keepInfo(info, gen)
	return info, nil
}

// keepInfo caches info unless an action ran since generation gen began.
func (a *actuator) keepInfo(info pgnode.DataDirInfo, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.infoGen == gen {
		a.info, a.infoAt = info, time.Now()
	}
}

// dropInfo forgets the cached inspection.
func (a *actuator) dropInfo() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.infoGen++
	a.infoAt = time.Time{}
}

// changeTracker wraps the actuator's Postgres so that every action that
// may change the server or its files drops the cached inspection, before
// and after it runs.
type changeTracker struct {
	Postgres
	changed func()
}

func (c changeTracker) track(f func() error) error {
	c.changed()
	defer c.changed()
	return f()
}

func (c changeTracker) Bootstrap(ctx context.Context) (sysid uint64, err error) {
	err = c.track(func() (e error) { sysid, e = c.Postgres.Bootstrap(ctx); return e })
	return sysid, err
}

func (c changeTracker) Start(ctx context.Context, opts pgnode.StartOptions) error {
	return c.track(func() error { return c.Postgres.Start(ctx, opts) })
}

func (c changeTracker) Stop(ctx context.Context, mode pgnode.StopMode) error {
	return c.track(func() error { return c.Postgres.Stop(ctx, mode) })
}

func (c changeTracker) Promote(ctx context.Context) error {
	return c.track(func() error { return c.Postgres.Promote(ctx) })
}

func (c changeTracker) Rewind(ctx context.Context, up pgnode.Upstream) error {
	return c.track(func() error { return c.Postgres.Rewind(ctx, up) })
}

func (c changeTracker) CloneFrom(ctx context.Context, up pgnode.Upstream) error {
	return c.track(func() error { return c.Postgres.CloneFrom(ctx, up) })
}

func (c changeTracker) Reinit(ctx context.Context, up pgnode.Upstream) error {
	return c.track(func() error { return c.Postgres.Reinit(ctx, up) })
}

// probePromoted publishes the health of a server just promoted from the
// data directory state seen before (now without standby.signal) and a
// fresh SQL probe: the decider exposes the new primary on this report,
// and a new inspection would put file reads (or a pg_controldata run)
// in front of it.
// The probe loop inspects again on its next round.
func (a *actuator) probePromoted(ctx context.Context, before pgnode.DataDirInfo) {
	before.Standby = false
	pid := a.pg.Process().PID
	st, _ := a.pg.Probe(ctx)
	h := healthOf(before, st, a.pg.Process())
	a.mu.Lock()
	a.health, a.healthAt = h, time.Now()
	a.mu.Unlock()
	a.noteProbe(st, pid)
}

// noteProbe records, for recentlyWritable, a probe that found the server
// writable (up, out of recovery), if the postmaster is still pid, the one
// that ran when the probe began: a probe that raced a restart (a former
// primary rejoining as a standby) proves nothing about its successor.
func (a *actuator) noteProbe(st pgnode.Status, pid int) {
	if !st.Up || st.InRecovery || pid == 0 || a.pg.Process().PID != pid {
		return
	}
	a.mu.Lock()
	a.writableAt, a.writablePID = time.Now(), pid
	a.mu.Unlock()
}

// recentlyWritable reports a probe younger than a loop that found this
// agent's running postmaster (the same process) up and out of recovery.
// A primary's convergence round then skips its own probe: every commit
// starts a round (each lease renewal, each step of a switchover), the
// probe is 10–25 ms of SQL on a busy server, and a switchover's step-down
// that commits during a round waits for it (20–45 ms in half the
// benchmark's switchovers). A postmaster that exits or is replaced is
// seen at once (the process changes); one that hangs, by the probe loop
// within a loop, as before.
func (a *actuator) recentlyWritable() bool {
	proc := a.pg.Process()
	a.mu.Lock()
	defer a.mu.Unlock()
	return proc.State == pgnode.ProcessRunning && proc.PID == a.writablePID && proc.PID != 0 &&
		!a.writableAt.IsZero() && time.Since(a.writableAt) < a.s.opts.Timing.LoopWait
}
