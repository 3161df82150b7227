package server

import (
	"context"
	"fmt"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// A planned switchover stops the old primary with a fast shutdown, whose
// shutdown checkpoint writes every dirty buffer while clients wait in
// PgBouncer. Checkpointing once before the drain, while clients still
// run, leaves the shutdown checkpoint only what was dirtied since.

// Checkpoint runs CHECKPOINT on this node's PostgreSQL; only the primary
// of the committed state does.
func (s *Server) Checkpoint(ctx context.Context) error {
	if s.act == nil {
		return fmt.Errorf("%w: node %s runs no PostgreSQL", ErrPrecondition, s.opts.NodeID)
	}
	if p := s.fsm.State().Primary.GetMemberId(); p != s.opts.NodeID {
		return fmt.Errorf("%w: checkpoint: %s is not the primary (%q is)", ErrPrecondition, s.opts.NodeID, p)
	}
	return s.act.pg.Checkpoint(ctx)
}

// checkpointMember asks member id, the primary about to step down, to
// checkpoint, bounded by RetryTimeout. A failure is logged and costs only
// time later: the shutdown checkpoint does the work instead.
func (s *Server) checkpointMember(ctx context.Context, id string) {
	began := time.Now()
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timing.RetryTimeout)
	defer cancel()
	var err error
	if id == s.opts.NodeID {
		err = s.Checkpoint(cctx)
	} else if m := fsm.FindMember(s.fsm.State(), id); m == nil {
		err = fmt.Errorf("%w: member %s", ErrNotFound, id)
	} else {
		var c pb.AdminClient
		if c, err = s.opts.Dial(m.GrpcAddr); err == nil {
			var h *pb.PostgresHealth
			if h, err = c.Probe(cctx, &pb.ProbeRequest{Checkpoint: true}); err == nil {
				s.contacts.report(id, h, time.Now())
			}
		}
	}
	if err != nil {
		s.log.Info("checkpoint before the switchover failed; the shutdown checkpoint does it", "member", id, "err", err)
		return
	}
	s.log.Info("checkpoint before the switchover", "member", id, "took", time.Since(began).Round(time.Millisecond))
}
