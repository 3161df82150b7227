package server

import (
	"context"
	"fmt"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// A planned switchover stops the old primary with a fast shutdown while
// clients wait in PgBouncer. What that shutdown would wait for is done
// once before the drain, while clients still run (pgnode's PrepareStop):
// a checkpoint, so the shutdown checkpoint has only what was dirtied
// since, and the end of the logical replication launcher.

// PrepareStop readies this node's PostgreSQL for a fast shutdown soon;
// only the primary of the committed state does.
func (s *Server) PrepareStop(ctx context.Context) error {
	if s.act == nil {
		return fmt.Errorf("%w: node %s runs no PostgreSQL", ErrPrecondition, s.opts.NodeID)
	}
	if p := s.fsm.State().Primary.GetMemberId(); p != s.opts.NodeID {
		return fmt.Errorf("%w: checkpoint: %s is not the primary (%q is)", ErrPrecondition, s.opts.NodeID, p)
	}
	return s.act.pg.PrepareStop(ctx)
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
		err = s.PrepareStop(cctx)
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
