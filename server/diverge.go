package server

import (
	"context"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// An asynchronous standby can be further down the old primary's WAL than
// the synchronous standby that was promoted. It then follows the new
// primary but can never switch to its timeline, and PostgreSQL retries for
// ever. It is found by its WAL receiver not streaming for a while, then
// confirmed against the new primary's timeline history (pgnode.Diverged)
// before anything is stopped; pg_rewind brings it back.

// stuckGrace is how long a standby may fail to stream before the
// divergence check: a timeline switch after a promotion takes well under
// a second, and the check itself is definitive (it compares against the
// new primary's timeline history), so it need not wait long. In strict
// mode with one standby left, writes wait for this standby's rewind after
// a failover (chaos finding 8), so every second here is a second without
// writes.
func (a *actuator) stuckGrace() time.Duration { return max(2*a.s.opts.Timing.LoopWait, time.Second) }

// rejoinIfDiverged rewinds a running standby of up that diverged from it.
// It reports whether it did (or tried to).
func (a *actuator) rejoinIfDiverged(ctx context.Context, p *pb.PrimaryAssignment, up pgnode.Upstream) (bool, error) {
	a.mu.Lock()
	streaming := !a.streamingAt.IsZero() && time.Since(a.streamingAt) < a.s.opts.Timing.LoopWait
	a.mu.Unlock()
	if !streaming {
		st, err := a.pg.Probe(ctx)
		streaming = err == nil && st.WALReceiver == "streaming"
	}
	a.mu.Lock()
	if streaming || a.stuckSince.IsZero() {
		a.stuckSince = time.Time{}
		if !streaming {
			a.stuckSince = time.Now()
		}
		a.mu.Unlock()
		return false, nil
	}
	stuck := time.Since(a.stuckSince)
	a.mu.Unlock()
	if stuck < a.stuckGrace() {
		return false, nil
	}
	diverged, err := a.pg.Diverged(ctx, up)
	a.mu.Lock()
	a.stuckSince = time.Now() // look again after another grace
	a.mu.Unlock()
	if err != nil {
		a.log.Debug("divergence check", "upstream", p.MemberId, "err", err)
		return false, nil
	}
	if !diverged {
		return false, nil
	}
	a.log.Warn("standby replayed past the new primary's fork point; rewinding it", "primary", p.MemberId, "epoch", p.Epoch, "not_streaming_for", stuck.Round(time.Millisecond))
	return true, a.rejoin(ctx, p, up)
}
