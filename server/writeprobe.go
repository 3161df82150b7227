package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// A stalled disk passes read-only health checks (FACTS.md): the primary's
// commits hang in their WAL flush while its probes still answer, so it
// kept renewing its lease and was never replaced (chaos finding 5: no
// write for the whole 29 s stall). The primary therefore also commits a
// tiny write every loop (pgnode's WriteProbe, synchronous_commit = local:
// its own disk only), and the lease keeper stops renewing once a write has
// been stuck for longer than the ttl. The primary then fences itself at
// the lease's end and the decider fails over as for any lost lease.

// errWritesStalled stands for the renewal the lease keeper did not send.
var errWritesStalled = errors.New("writes stalled: lease not renewed")

// writeHealth is what the write probes saw. Only a write that finished
// clears a stall: a probe that fails otherwise (PostgreSQL down, which is
// what the fence itself does to a stalled primary) changes nothing. A
// primary that crashes without a stall has no stuck write and keeps its
// lease while it restarts in place; a new epoch starts clean.
type writeHealth struct {
	mu       sync.Mutex
	inflight time.Time // start of the probe in flight; zero when none
	stuck    time.Time // start of the first probe that timed out since the last good one
}

func (w *writeHealth) begin(now time.Time) {
	w.mu.Lock()
	w.inflight = now
	w.mu.Unlock()
}

// end records the probe that began at start; timedOut: it did not finish
// in time.
func (w *writeHealth) end(start time.Time, err error, timedOut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight = time.Time{}
	switch {
	case err == nil:
		w.stuck = time.Time{}
	case timedOut && w.stuck.IsZero():
		w.stuck = start
	}
}

// reset forgets everything (a new epoch starts with a clean slate).
func (w *writeHealth) reset() {
	w.mu.Lock()
	w.inflight, w.stuck = time.Time{}, time.Time{}
	w.mu.Unlock()
}

// stalled reports whether writes have been stuck for longer than grace at
// now, and since when.
func (w *writeHealth) stalled(now time.Time, grace time.Duration) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	since := w.stuck
	if since.IsZero() {
		since = w.inflight
	}
	return since, !since.IsZero() && now.Sub(since) > grace
}

// writeProbeLoop probes writes every loop while this node's PostgreSQL
// runs as the assigned primary. Each probe may take up to the ttl.
func (a *actuator) writeProbeLoop(ctx context.Context) {
	t := a.s.opts.Timing
	tick := time.NewTicker(t.LoopWait)
	defer tick.Stop()
	for {
		if a.primaryRunning() {
			start := time.Now()
			a.writes.begin(start)
			err := a.pg.WriteProbe(ctx, t.TTL)
			if ctx.Err() != nil {
				return
			}
			timedOut := errors.Is(err, context.DeadlineExceeded) || time.Since(start) >= t.TTL
			a.writes.end(start, err, timedOut)
			if err != nil && timedOut {
				a.log.Warn("write probe did not finish in time", "took", time.Since(start).Round(time.Millisecond), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// primaryRunning: this node is the assigned primary of the current epoch
// and its last probe saw PostgreSQL up and out of recovery.
func (a *actuator) primaryRunning() bool {
	p := a.s.fsm.State().Primary
	if p.GetMemberId() != a.s.opts.NodeID || p.GetReleased() || a.releasedEpoch() == p.GetEpoch() || a.isFenced() {
		return false
	}
	h := a.Health()
	return h != nil && h.State == pb.PgState_PG_STATE_RUNNING && !h.InRecovery &&
		a.pg.Process().State == pgnode.ProcessRunning
}
