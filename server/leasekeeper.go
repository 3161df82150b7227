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
	for {
		st := a.s.fsm.State()
		p := st.Primary
		mine := p.GetMemberId() == a.s.opts.NodeID && !p.GetReleased() && a.releasedEpoch() != p.GetEpoch()
		switch {
		case !mine:
			a.setFenced(false)
		case p.Epoch != epoch:
			// A new epoch: the assignment itself was committed just now.
			epoch = p.Epoch
			validUntil = time.Now().Add(t.TTL)
			fallthrough
		default:
			sent := time.Now()
			err := a.renew(ctx, p.Epoch)
			switch {
			case err == nil:
				validUntil = sent.Add(t.TTL)
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
		}
	}
}

// renew sends one renewal to the leader, bounded by RetryTimeout.
func (a *actuator) renew(ctx context.Context, epoch uint64) error {
	rctx, cancel := context.WithTimeout(ctx, a.s.opts.Timing.RetryTimeout)
	defer cancel()
	err := a.s.callLeader(rctx, func(ctx context.Context, c pb.AdminClient) error {
		_, err := c.RenewLease(ctx, &pb.RenewLeaseRequest{MemberId: a.s.opts.NodeID, Epoch: epoch})
		return err
	})
	return fromStatus(err)
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
	if a.setFenced(true) {
		a.log.Error("lease about to run out: fencing PostgreSQL", "epoch", epoch,
			"lease_left", time.Until(validUntil).Round(time.Millisecond))
	}
	fctx, cancel := context.WithTimeout(ctx, a.s.opts.Timing.SafetyMargin+time.Second)
	defer cancel()
	if err := a.pg.Stop(fctx, pgnode.StopImmediate); err != nil {
		a.log.Error("fence: stop failed", "epoch", epoch, "err", err)
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
