package server

import (
	"context"
	"fmt"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// LocalPostgres is what the server asks of this node's own PostgreSQL
// agent: a fresh probe (for the decider's "ask before acting"). It is nil
// on witnesses.
type LocalPostgres interface {
	Probe(ctx context.Context) (*pb.PostgresHealth, error)
}

// RenewLease commits a lease renewal for the primary of epoch.
func (s *Server) RenewLease(ctx context.Context, member string, epoch uint64) (uint64, error) {
	if member == "" || epoch == 0 {
		return 0, fmt.Errorf("%w: member_id and epoch are required", ErrInvalid)
	}
	return s.propose(ctx, &pb.RenewLease{MemberId: member, Epoch: epoch})
}

// ReleaseLease commits that the primary gave its lease back.
func (s *Server) ReleaseLease(ctx context.Context, req *pb.ReleaseLease) (uint64, error) {
	if req.GetMemberId() == "" || req.GetEpoch() == 0 {
		return 0, fmt.Errorf("%w: member_id and epoch are required", ErrInvalid)
	}
	index, err := s.propose(ctx, req)
	if err == nil {
		s.log.Info("lease released", "member", req.MemberId, "epoch", req.Epoch, "lsn", req.Lsn, "reason", req.Reason)
	}
	return index, err
}

// SetSync commits the synchronous standby set of an epoch.
func (s *Server) SetSync(ctx context.Context, req *pb.SetSync) (uint64, error) {
	if req.GetEpoch() == 0 {
		return 0, fmt.Errorf("%w: epoch is required", ErrInvalid)
	}
	index, err := s.propose(ctx, req)
	if err == nil {
		s.log.Info("synchronous standbys recorded", "epoch", req.Epoch, "members", req.Members, "degraded", req.Degraded)
	}
	return index, err
}

// Probe returns this node's fresh view of its PostgreSQL.
func (s *Server) Probe(ctx context.Context) (*pb.PostgresHealth, error) {
	if s.local == nil {
		return nil, fmt.Errorf("%w: node %s runs no PostgreSQL", ErrPrecondition, s.opts.NodeID)
	}
	return s.local.Probe(ctx)
}

// Switchover plans a change of primary (or cancels the planned one). It
// runs on the leader and checks the request against the current state:
// a named candidate must be eligible right now.
func (s *Server) Switchover(ctx context.Context, req *pb.SwitchoverRequest) (*pb.SwitchoverResponse, error) {
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	v := s.currentView()
	st := v.st
	if req.Cancel {
		if st.Switchover == nil {
			return nil, fmt.Errorf("%w: no switchover is pending", ErrPrecondition)
		}
		if st.Switchover.SteppingDown {
			return nil, fmt.Errorf("%w: the switchover already started (the primary is stepping down)", ErrPrecondition)
		}
		index, err := s.propose(ctx, &pb.SetSwitchover{})
		return &pb.SwitchoverResponse{Index: index, Message: "switchover cancelled"}, err
	}
	if req.ScheduledAtUnixMs < 0 {
		return nil, fmt.Errorf("%w: scheduled_at_unix_ms: %d is before 1970", ErrInvalid, req.ScheduledAtUnixMs)
	}
	p := st.Primary
	switch {
	case p.GetMemberId() == "":
		return nil, fmt.Errorf("%w: there is no primary yet", ErrPrecondition)
	case req.Leader != "" && req.Leader != p.MemberId:
		return nil, fmt.Errorf("%w: leader: %s is not the primary (%s is)", ErrPrecondition, req.Leader, p.MemberId)
	case v.leaseExpired():
		return nil, fmt.Errorf("%w: the primary %s has no valid lease; use failover", ErrPrecondition, p.MemberId)
	case st.Switchover != nil:
		return nil, fmt.Errorf("%w: a switchover is already pending (from %s to %q); cancel it first", ErrPrecondition, st.Switchover.From, st.Switchover.To)
	case st.Paused:
		return nil, fmt.Errorf("%w: the cluster is paused", ErrPrecondition)
	}
	if req.Candidate != "" {
		if fsm.FindMember(st, req.Candidate) == nil {
			return nil, fmt.Errorf("%w: candidate: member %q", ErrNotFound, req.Candidate)
		}
		if req.Candidate == p.MemberId {
			return nil, fmt.Errorf("%w: candidate: %s is already the primary", ErrPrecondition, req.Candidate)
		}
	}
	// Heartbeats may be a loop old either way: a member that just started
	// looks down, one that just fell behind looks current. Ask the primary
	// and the candidates themselves: a switchover accepted on a stale lag
	// would step the primary down and leave the cluster without one until
	// the laggard catches up.
	probe := postgresMembers(st)
	if req.Candidate != "" {
		probe = []string{p.MemberId, req.Candidate}
	}
	v = s.probedView(ctx, probe) // a candidate that does not answer is refused
	if err := checkCandidate(v, req.Candidate); err != nil {
		return nil, err
	}
	sw := &pb.Switchover{From: p.MemberId, To: req.Candidate, Epoch: p.Epoch,
		ScheduledAtUnixMs: req.ScheduledAtUnixMs, RequestedAtUnixMs: time.Now().UnixMilli()}
	index, err := s.propose(ctx, &pb.SetSwitchover{Switchover: sw})
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("switchover from %s planned", p.MemberId)
	if req.ScheduledAtUnixMs > 0 {
		msg += " at " + time.UnixMilli(req.ScheduledAtUnixMs).UTC().Format(time.RFC3339)
	}
	return &pb.SwitchoverResponse{Index: index, Message: msg}, nil
}

// checkCandidate refuses a named candidate that automatic promotion would
// not pick (lagging, nofailover, not a synchronous standby, down), and an
// empty one when nobody is eligible.
func checkCandidate(v view, id string) error {
	cands, why := candidates(v)
	if len(cands) == 0 {
		return fmt.Errorf("%w: %s", ErrPrecondition, why)
	}
	if id == "" {
		return nil
	}
	for _, c := range cands {
		if c.id == id {
			return nil
		}
	}
	return fmt.Errorf("%w: candidate %s is not eligible (%s)", ErrPrecondition, id, why)
}

// Failover promotes a named candidate when there is no healthy primary:
// the primary's lease must have run out or been released.
func (s *Server) Failover(ctx context.Context, req *pb.FailoverRequest) (*pb.SwitchoverResponse, error) {
	if req.GetCandidate() == "" {
		return nil, fmt.Errorf("%w: candidate is required", ErrInvalid)
	}
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	v := s.currentView()
	st := v.st
	if fsm.FindMember(st, req.Candidate) == nil {
		return nil, fmt.Errorf("%w: candidate: member %q", ErrNotFound, req.Candidate)
	}
	if st.Primary.GetMemberId() != "" && !v.leaseExpired() {
		return nil, fmt.Errorf("%w: the primary %s holds a valid lease; use switchover", ErrPrecondition, st.Primary.MemberId)
	}
	v = s.probedView(ctx, []string{req.Candidate}) // refused if it does not answer
	if err := checkCandidate(v, req.Candidate); err != nil {
		return nil, err
	}
	reason := fmt.Sprintf("manual failover to %s", req.Candidate)
	index, err := s.propose(ctx, &pb.AssignPrimary{
		ExpectedEpoch: st.Primary.GetEpoch(), ExpectedLeaseSeq: v.leaseSeq, MemberId: req.Candidate,
		Timeline: v.pg(req.Candidate).GetTimeline(), Reason: reason, AtUnixMs: time.Now().UnixMilli(),
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("decision", "reason", reason, "epoch", st.Primary.GetEpoch()+1, "primary", req.Candidate)
	return &pb.SwitchoverResponse{Index: index, Message: reason}, nil
}

// LocalHealth returns the cached health of this node's PostgreSQL (nil on
// witnesses and before the first probe). It never blocks on PostgreSQL.
func (s *Server) LocalHealth() *pb.PostgresHealth {
	if s.act == nil {
		return nil
	}
	return s.act.Health()
}

// Options returns the options the server runs with.
func (s *Server) Options() Options { return s.opts }

// LeaseAge reports how long ago this node observed the current primary's
// last lease renewal, on its monotonic clock.
func (s *Server) LeaseAge() time.Duration {
	st := s.fsm.State()
	return s.lease.age(st.Primary.GetEpoch(), st.Primary.GetLeaseSeq(), time.Now())
}

// postgresMembers lists the IDs of the members that run PostgreSQL.
func postgresMembers(st *pb.ClusterState) []string {
	var ids []string
	for _, m := range st.Members {
		if m.Role == pb.MemberRole_MEMBER_ROLE_POSTGRES {
			ids = append(ids, m.Id)
		}
	}
	return ids
}
