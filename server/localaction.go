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

// localRequest is an operator's restart, reload or reinit of this node's
// PostgreSQL. The converge loop carries it out between two rounds, so it
// never races the convergence that would otherwise see a stopped server
// and start it again (or count a crash against primary_start_timeout).
type localRequest struct {
	req  *pb.LocalActionRequest
	done chan localResult
}

type localResult struct {
	skipped string
	err     error
}

// LocalAction carries out a restart, reload or reinit of this node's own
// PostgreSQL (see the Restart RPC for why the leader sends it here rather
// than committing it to Raft). It waits until the actuator took the
// request and finished it, or ctx ends.
func (s *Server) LocalAction(ctx context.Context, req *pb.LocalActionRequest) (*pb.MemberResult, error) {
	switch req.GetAction() {
	case pb.LocalActionKind_LOCAL_ACTION_RESTART, pb.LocalActionKind_LOCAL_ACTION_RELOAD, pb.LocalActionKind_LOCAL_ACTION_REINIT:
	default:
		return nil, fmt.Errorf("%w: action: %v is not restart, reload or reinit", ErrInvalid, req.GetAction())
	}
	if s.act == nil {
		return nil, fmt.Errorf("%w: node %s runs no PostgreSQL", ErrPrecondition, s.opts.NodeID)
	}
	began := time.Now()
	r := &localRequest{req: req, done: make(chan localResult, 1)}
	select {
	case s.act.requests <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s of %s not started: the actuator is busy: %w", actionName(req.Action), s.opts.NodeID, ctx.Err())
	}
	select {
	case res := <-r.done:
		if res.err != nil {
			return nil, res.err
		}
		return &pb.MemberResult{Member: s.opts.NodeID, Done: res.skipped == "", Skipped: res.skipped,
			TookMs: time.Since(began).Milliseconds()}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s of %s still running when the caller gave up: %w", actionName(req.Action), s.opts.NodeID, ctx.Err())
	}
}

// actionName is the verb operators know for an action kind.
func actionName(k pb.LocalActionKind) string {
	switch k {
	case pb.LocalActionKind_LOCAL_ACTION_RESTART:
		return "restart"
	case pb.LocalActionKind_LOCAL_ACTION_RELOAD:
		return "reload"
	case pb.LocalActionKind_LOCAL_ACTION_REINIT:
		return "reinit"
	}
	return "action"
}

// handle runs one local request on the converge loop's goroutine.
func (a *actuator) handle(ctx context.Context, r *localRequest) {
	var res localResult
	st := a.s.fsm.State()
	if e := st.Primary.GetEpoch(); r.req.Epoch != 0 && e != r.req.Epoch {
		res.err = fmt.Errorf("%w: the primary changed (epoch %d, the request was made at %d); ask again", ErrPrecondition, e, r.req.Epoch)
	} else {
		// An operator's restart or reinit acts although the cluster is
		// paused: maintenance mode stops only what is automatic.
		a.mu.Lock()
		a.explicit = true
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			a.explicit = false
			a.mu.Unlock()
		}()
		switch r.req.Action {
		case pb.LocalActionKind_LOCAL_ACTION_RESTART:
			res = a.restart(ctx, st, r.req.PendingOnly)
		case pb.LocalActionKind_LOCAL_ACTION_RELOAD:
			res.err = a.reload(ctx, st)
		case pb.LocalActionKind_LOCAL_ACTION_REINIT:
			res.err = a.reinit(ctx, st)
		}
	}
	if res.err != nil {
		a.log.Warn(actionName(r.req.Action)+" failed", "err", res.err)
	}
	r.done <- res
}

// restart stops PostgreSQL (fast) and starts it again in its role, which
// applies the parameters that need a restart.
//
// The primary restarts in place and stays primary: its lease is not
// released and the lease keeper goes on renewing it while PostgreSQL is
// down (renewals do not depend on PostgreSQL), so the decider sees an
// unbroken lease and never fails over. The lease must be held before
// anything is stopped, since the start makes the data directory writable
// again; and right after the start the fence guard is re-armed for the new
// postmaster (the old deadline named the old PID), so the new primary is
// never unguarded. A primary that is stepping down, fenced or has given
// its lease back is refused.
func (a *actuator) restart(ctx context.Context, st *pb.ClusterState, pendingOnly bool) localResult {
	a.probe(ctx)
	h := a.Health()
	if pendingOnly && !h.GetPendingRestart() {
		return localResult{skipped: "no pending restart"}
	}
	p := st.Primary
	primary := p.GetMemberId() == a.s.opts.NodeID
	if primary {
		switch {
		case a.isFenced():
			return localResult{err: fmt.Errorf("%w: %s is fenced (its lease ran out); not restarting it", ErrPrecondition, a.s.opts.NodeID)}
		case p.Released || a.releasedEpoch() == p.Epoch:
			return localResult{err: fmt.Errorf("%w: %s gave its lease of epoch %d back", ErrPrecondition, a.s.opts.NodeID, p.Epoch)}
		case st.Switchover != nil && (st.Switchover.SteppingDown || st.Switchover.Draining):
			return localResult{err: fmt.Errorf("%w: a switchover from %s is under way", ErrPrecondition, st.Switchover.From)}
		}
		if err := a.acquireLease(ctx, p.Epoch); err != nil {
			return localResult{err: fmt.Errorf("%w: restart of the primary refused: %v", ErrPrecondition, err)}
		}
	}
	a.log.Info("restarting PostgreSQL", "primary", primary, "epoch", p.GetEpoch(), "pending", h.GetPendingRestartParams())
	a.mu.Lock()
	a.following = pgnode.Upstream{}
	a.mu.Unlock()
	a.mu.Lock()
	a.quiet = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.quiet = false
		a.mu.Unlock()
	}()
	if err := a.stop(ctx, pgnode.StopFast); err != nil {
		return localResult{err: fmt.Errorf("restart: stop: %w", err)}
	}
	// One convergence round starts it again in its role: a standby of the
	// current primary, or the primary of the same epoch (after checking
	// the lease again and re-arming the guard).
	if err := a.converge(ctx); err != nil {
		return localResult{err: fmt.Errorf("restart: start again: %w", err)}
	}
	a.probe(ctx)
	if h := a.Health(); h.GetState() != pb.PgState_PG_STATE_RUNNING {
		return localResult{err: fmt.Errorf("restart: PostgreSQL is %v after the start", h.GetState())}
	}
	a.s.callbacks.fire(cbRestart, a.roleName(st))
	a.log.Info("PostgreSQL restarted", "primary", primary, "epoch", p.GetEpoch())
	return localResult{}
}

// reload rewrites the configuration (the dynamic parameters) and makes
// PostgreSQL re-read it.
func (a *actuator) reload(ctx context.Context, st *pb.ClusterState) error {
	if _, err := a.pg.SetParameters(ctx, st.Config.GetPostgresParameters()); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	a.mu.Lock()
	a.paramsVersion = st.Config.GetVersion()
	a.mu.Unlock()
	a.probe(ctx)
	a.s.callbacks.fire(cbReload, a.roleName(st))
	a.log.Info("PostgreSQL configuration reloaded", "config_version", st.Config.GetVersion())
	return nil
}

// reinit moves this standby's data directory aside and clones it again
// from the primary. The primary is never reinitialized.
func (a *actuator) reinit(ctx context.Context, st *pb.ClusterState) error {
	p := st.Primary
	switch {
	case p.GetMemberId() == "":
		return fmt.Errorf("%w: there is no primary to clone from", ErrPrecondition)
	case p.MemberId == a.s.opts.NodeID:
		return fmt.Errorf("%w: %s is the primary (epoch %d); switch over first", ErrPrecondition, p.MemberId, p.Epoch)
	case st.Identity.GetSystemIdentifier() == 0:
		return fmt.Errorf("%w: the cluster's system identifier is not recorded yet", ErrPrecondition)
	}
	pm := fsm.FindMember(st, p.MemberId)
	if pm == nil {
		return fmt.Errorf("primary %s is not a member", p.MemberId)
	}
	up, err := upstreamOf(pm, a.s.opts.NodeID)
	if err != nil {
		return err
	}
	a.log.Info("reinitializing: cloning the data directory again", "primary", p.MemberId, "epoch", p.Epoch)
	a.mu.Lock()
	a.following = pgnode.Upstream{}
	a.mu.Unlock()
	a.setPhase(pb.PgState_PG_STATE_CLONING)
	err = a.pg.Reinit(ctx, up)
	a.setPhase(pb.PgState_PG_STATE_UNKNOWN)
	if err != nil {
		if errors.Is(err, pgnode.ErrRunningPrimary) {
			return fmt.Errorf("%w: reinit: %v", ErrPrecondition, err)
		}
		return fmt.Errorf("reinit from %s: %w", p.MemberId, err)
	}
	if err := a.converge(ctx); err != nil {
		return fmt.Errorf("reinit: start as standby: %w", err)
	}
	a.probe(ctx)
	a.log.Info("reinitialized", "primary", p.MemberId)
	return nil
}

// roleName is the role argument of callbacks: "primary" or "replica" as
// the committed state has it for this node.
func (a *actuator) roleName(st *pb.ClusterState) string {
	if st.Primary.GetMemberId() == a.s.opts.NodeID {
		return "primary"
	}
	return "replica"
}
