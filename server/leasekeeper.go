package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// leaseLoop keeps the primary's lease while this node is the assigned
// primary, and fences PostgreSQL before the lease can run out.
//
// The rule (DESIGN.md invariant 3): a renewal sent at local monotonic time
// t that gets committed extends the lease to t + ttl. The primary stops
// taking writes at t + ttl - safety_margin unless a later renewal commits;
// the decider, which saw the renewal applied at some time >= t on its own
// clock, waits until that time + ttl + safety_margin before it assigns
// anyone else. Both clocks only measure intervals, so wall-clock jumps do
// not matter, and the two margins absorb clock-rate drift and the time a
// fence takes.
func (a *actuator) leaseLoop(ctx context.Context) {
	t := a.s.opts.Timing
	tick := time.NewTicker(t.LoopWait)
	defer tick.Stop()
	// An agent that just started does not know when its last renewal was
	// sent: it gives itself one lease from now before it fences, so a
	// restart inside the ttl never stops PostgreSQL (invariant 8).
	validUntil := time.Now().Add(t.TTL)
	var epoch uint64
	// Renew as soon as the FSM shows this node primary (a restarted agent
	// learns it when the leader's first heartbeat arrives), not a tick
	// later.
	_, sub := a.s.fsm.Subscribe(^uint64(0), 16)
	defer func() { sub.Close() }()
	defer a.finalRenewal(&validUntil)
	for {
		st := a.s.fsm.State()
		p := st.Primary
		mine := p.GetMemberId() == a.s.opts.NodeID && !p.GetReleased() && a.releasedEpoch() != p.GetEpoch()
		switch {
		case !mine:
			a.setFenced(false)
			a.disarmGuard()
		case p.Epoch != epoch:
			// A new epoch: the assignment itself was committed just now.
			epoch = p.Epoch
			validUntil = time.Now().Add(t.TTL)
			a.writes.reset()
			fallthrough
		default:
			// A renewal that hangs (a partition drops packets) must not
			// hold up the fence: give up at the fence point. Once that
			// point has passed (fenced), renew is bounded by RetryTimeout
			// alone, so a fenced primary can regain its lease.
			rctx, cancel := ctx, context.CancelFunc(func() {})
			if fenceAt := validUntil.Add(-t.SafetyMargin); time.Now().Before(fenceAt) {
				rctx, cancel = context.WithDeadline(ctx, fenceAt)
			}
			var until time.Time
			err := errWritesStalled
			if !a.writesStalled(t.TTL) {
				// A primary whose writes hang is not renewed: the
				// fence below stops it at the lease's end, and the
				// decider fails over (see writeprobe.go).
				until, err = a.renew(rctx, p.Epoch)
			}
			cancel()
			switch {
			case err == nil:
				if time.Now().After(validUntil.Add(-t.SafetyMargin)) {
					// Renewed past the fence point: the fence guard,
					// armed with that point, may have stopped PostgreSQL
					// before this renewal re-armed it. That counts as the
					// fence, so a paused cluster starts it again too.
					a.noteFenced(p.Epoch)
					a.poke()
				}
				validUntil = until
				a.armGuard(validUntil.Add(-t.SafetyMargin))
				if a.setFenced(false) {
					a.log.Info("lease regained; unfencing", "epoch", p.Epoch)
					a.poke()
				}
			case errors.Is(err, fsm.ErrStaleEpoch), errors.Is(err, fsm.ErrNotPrimary):
				// Replaced: the FSM will tell the converge loop.
			default:
				a.log.Debug("lease renewal failed", "epoch", p.Epoch, "err", err)
			}
			if time.Now().After(validUntil.Add(-t.SafetyMargin)) {
				a.fence(ctx, p.Epoch, validUntil)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case _, ok := <-sub.C:
			if !ok {
				_, sub = a.s.fsm.Subscribe(^uint64(0), 16)
			}
		}
	}
}

// writesStalled reports a primary whose writes have been stuck for longer
// than grace (see writeprobe.go), logging the first time.
func (a *actuator) writesStalled(grace time.Duration) bool {
	since, stuck := a.writes.stalled(time.Now(), grace)
	a.mu.Lock()
	first := stuck && !a.writeStallLogged
	a.writeStallLogged = stuck
	a.mu.Unlock()
	if first {
		a.log.Error("PostgreSQL has not finished a write for longer than the ttl (stalled disk?): not renewing the lease; it fences itself when the lease ends and another member takes over",
			"stuck_for", time.Since(since).Round(time.Millisecond))
	}
	return stuck
}

// finalRenewal runs when the agent stops (SIGTERM for a restart or an
// upgrade): one last renewal re-arms the fence guard with a full lease, so
// the next agent has the whole ttl minus the safety margin to come back
// before PostgreSQL is fenced.
func (a *actuator) finalRenewal(validUntil *time.Time) {
	st := a.s.fsm.State()
	p := st.Primary
	if p.GetMemberId() != a.s.opts.NodeID || p.GetReleased() || a.releasedEpoch() == p.GetEpoch() || a.isFenced() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.s.opts.Timing.RetryTimeout)
	defer cancel()
	until, err := a.renew(ctx, p.Epoch)
	if err != nil {
		a.log.Warn("final lease renewal before stopping failed", "err", err)
		return
	}
	*validUntil = until
	a.armGuard(validUntil.Add(-a.s.opts.Timing.SafetyMargin))
	a.log.Info("agent stopping: lease renewed and fence guard armed for the next agent",
		"epoch", p.Epoch, "fence_in", time.Until(validUntil.Add(-a.s.opts.Timing.SafetyMargin)).Round(time.Millisecond))
}

func (a *actuator) isFenced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fenced
}

// armGuard tells the fence guard to kill the postmaster at fenceAt unless
// a later renewal moves it, so PostgreSQL is fenced even if this agent dies
// or hangs (a SIGSTOPped agent cannot fence itself).
func (a *actuator) armGuard(fenceAt time.Time) {
	g := a.s.opts.Guard
	if g == nil {
		return
	}
	pid := a.postmasterPID()
	if pid <= 1 {
		return
	}
	if err := g.Arm(pid, max(time.Until(fenceAt), 0)); err != nil {
		a.log.Warn("fence guard not armed", "err", err)
		return
	}
	a.mu.Lock()
	a.guardArmed, a.guardPID = true, pid
	a.mu.Unlock()
}

// postmasterPID is the running postmaster's PID: the one this agent
// started or adopted, or, right after an agent restart and before the
// converge loop adopted it, the one postmaster.pid names. The guard must
// be re-armed at the first renewal, not after adoption, or the previous
// agent's deadline runs out during the restart.
func (a *actuator) postmasterPID() int {
	if proc := a.pg.Process(); proc.State == pgnode.ProcessRunning {
		return proc.PID
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.s.opts.Timing.RetryTimeout)
	defer cancel()
	if info, err := a.pg.Inspect(ctx); err == nil && info.Running {
		return info.PostmasterPID
	}
	return 0
}

// ensureGuard arms the fence guard for a postmaster that began taking
// writes after the last renewal (a promotion, a start, initdb): the lease
// keeper would arm it only at its next renewal, and an agent that dies in
// between would leave an unguarded primary behind.
func (a *actuator) ensureGuard() {
	a.mu.Lock()
	pid, until := a.guardPID, a.leaseUntil
	a.mu.Unlock()
	if a.s.opts.Guard == nil || until.IsZero() || (pid != 0 && pid == a.pg.Process().PID) {
		return
	}
	a.armGuard(until.Add(-a.s.opts.Timing.SafetyMargin))
}

func (a *actuator) disarmGuard() {
	g := a.s.opts.Guard
	a.mu.Lock()
	armed := a.guardArmed
	a.guardArmed, a.guardPID = false, 0
	a.mu.Unlock()
	if g != nil && armed {
		if err := g.Disarm(); err != nil {
			a.log.Warn("fence guard not disarmed", "err", err)
		}
	}
}

// noteLease records that a renewal at epoch, sent at sent, committed.
func (a *actuator) noteLease(epoch uint64, sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leaseEpoch, a.leaseUntil = epoch, sent.Add(a.s.opts.Timing.TTL)
}

// acquireLease makes sure this node holds the lease of epoch before its
// PostgreSQL starts taking writes (start of a primary data directory,
// promotion, initdb): a renewal must commit at that epoch, which proves
// the FSM we act on is current. An agent replaying an old log after a
// restart may still see itself assigned at an epoch that was replaced;
// the renewal then fails with a stale epoch and nothing is started.
func (a *actuator) acquireLease(ctx context.Context, epoch uint64) error {
	if a.leaseHeld(epoch) {
		return nil
	}
	if _, err := a.renew(ctx, epoch); err != nil {
		return fmt.Errorf("no lease at epoch %d, not taking writes: %w", epoch, err)
	}
	return nil
}

// renew sends one renewal to the leader, bounded by RetryTimeout. On
// success the lease runs until the send time plus the ttl (the rule in
// the leaseLoop comment), which it records and returns.
func (a *actuator) renew(ctx context.Context, epoch uint64) (time.Time, error) {
	rctx, cancel := context.WithTimeout(ctx, a.s.opts.Timing.RetryTimeout)
	defer cancel()
	sent := time.Now()
	err := a.s.callLeader(rctx, func(ctx context.Context, c pb.AdminClient) error {
		_, err := c.RenewLease(ctx, &pb.RenewLeaseRequest{MemberId: a.s.opts.NodeID, Epoch: epoch})
		return err
	})
	if err != nil {
		return time.Time{}, fromStatus(err)
	}
	a.noteLease(epoch, sent)
	return sent.Add(a.s.opts.Timing.TTL), nil
}

// setFenced records the fence flag and reports whether it changed.
func (a *actuator) setFenced(f bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := a.fenced != f
	a.fenced = f
	return changed
}

// fence stops PostgreSQL at once (immediate mode: no checkpoint, nothing
// that can hang on a dead sync standby or a stalled disk).
func (a *actuator) fence(ctx context.Context, epoch uint64, validUntil time.Time) {
	a.noteFenced(epoch)
	if a.setFenced(true) {
		a.log.Error("lease about to run out: fencing PostgreSQL", "epoch", epoch,
			"lease_left", time.Until(validUntil).Round(time.Millisecond))
	}
	fctx, cancel := context.WithTimeout(ctx, a.s.opts.Timing.SafetyMargin+time.Second)
	defer cancel()
	running := a.pg.Process().State == pgnode.ProcessRunning
	if err := a.pg.Stop(fctx, pgnode.StopImmediate); err != nil {
		a.log.Error("fence: stop failed", "epoch", epoch, "err", err)
	} else if running {
		a.lifecycle(cbStop)
	}
}

// callLeader runs fn against the leader (or, with no leader known, against
// any member, which forwards).
func (s *Server) callLeader(ctx context.Context, fn func(context.Context, pb.AdminClient) error) error {
	_, addr := s.Leader()
	targets := []string{addr}
	if addr == "" {
		targets = s.registrationTargets(s.fsm.State(), "")
	}
	var errs []error
	for _, t := range targets {
		if t == "" {
			continue
		}
		c, err := s.opts.Dial(t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = fn(ctx, c)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: no leader known", ErrNotLeader)
	}
	return errs[len(errs)-1]
}

// leaseHeld reports whether this node holds the lease of epoch for longer
// than the safety margin yet, on its own clock.
func (a *actuator) leaseHeld(epoch uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leaseEpoch == epoch && time.Now().Before(a.leaseUntil.Add(-a.s.opts.Timing.SafetyMargin))
}
