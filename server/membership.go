package server

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Join adds a node to the Raft configuration and records its member entry,
// or updates them when the node comes back with new addresses. It runs on
// the leader. A stale server with the same ID at another address, or
// another ID at the same address, is removed first so the configuration
// never holds two entries for one node. A member that an operator removed
// is refused (fsm.ErrMemberRemoved) unless req.Readmit is set: only an
// explicit `ctl members add` brings it back, never the node itself.
func (s *Server) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	m := req.GetMember()
	if err := validateJoin(req); err != nil {
		return nil, err
	}
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	st := s.fsm.State()
	if name := st.Identity.GetName(); name != "" && name != req.ClusterName {
		return nil, fmt.Errorf("%w: node %q asks to join cluster %q, this is %q", ErrWrongCluster, m.Id, req.ClusterName, name)
	}
	if req.ClusterName != s.opts.ClusterName {
		return nil, fmt.Errorf("%w: node %q asks to join cluster %q, this is %q", ErrWrongCluster, m.Id, req.ClusterName, s.opts.ClusterName)
	}
	tomb := fsm.FindTombstone(st, m.Id)
	if tomb != nil && !req.Readmit {
		return nil, fmt.Errorf("%w: %q was removed at index %d; add it back with `pgquorum ctl members add`", fsm.ErrMemberRemoved, m.Id, tomb.Index)
	}
	if err := s.ensureRaftServer(m); err != nil {
		return nil, err
	}
	if have := fsm.FindMember(st, m.Id); !sameMember(have, m) || tomb != nil {
		rec := proto.Clone(m).(*pb.Member)
		rec.RegisteredAtUnixMs = time.Now().UnixMilli()
		if _, err := s.propose(ctx, &pb.UpsertMember{Member: rec, Readmit: req.Readmit}); err != nil {
			return nil, err
		}
		s.log.Info("member registered", "member", m.Id, "raft_addr", m.RaftAddr, "grpc_addr", m.GrpcAddr, "role", m.Role, "suffrage", m.Suffrage, "readmitted", tomb != nil)
	}
	st = s.fsm.State()
	return &pb.JoinResponse{Identity: st.Identity, Index: st.Index}, nil
}

func validateJoin(req *pb.JoinRequest) error {
	m := req.GetMember()
	switch {
	case req.GetClusterName() == "":
		return fmt.Errorf("%w: cluster_name is empty", ErrInvalid)
	case m.GetId() == "":
		return fmt.Errorf("%w: member.id is empty", ErrInvalid)
	case m.GetRaftAddr() == "":
		return fmt.Errorf("%w: member.raft_addr is empty", ErrInvalid)
	case m.GetGrpcAddr() == "":
		return fmt.Errorf("%w: member.grpc_addr is empty", ErrInvalid)
	case m.GetRole() == pb.MemberRole_MEMBER_ROLE_WITNESS && m.GetSuffrage() == pb.Suffrage_SUFFRAGE_NONVOTER:
		return fmt.Errorf("%w: member.suffrage: a witness must be a voter", ErrInvalid)
	}
	return nil
}

// ensureRaftServer makes the Raft configuration hold m exactly once with
// the right address and suffrage.
func (s *Server) ensureRaftServer(m *pb.Member) error {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return s.raftErr(err)
	}
	id, addr := raft.ServerID(m.Id), raft.ServerAddress(m.RaftAddr)
	voter := m.Suffrage != pb.Suffrage_SUFFRAGE_NONVOTER
	for _, srv := range cf.Configuration().Servers {
		sameID, sameAddr := srv.ID == id, srv.Address == addr
		switch {
		case sameID && sameAddr && (srv.Suffrage == raft.Voter) == voter:
			return nil
		case sameID && sameAddr && !voter:
			// Demotion keeps the log; no need to remove first.
			return s.raftErr(s.raft.DemoteVoter(id, 0, 0).Error())
		case sameID || sameAddr:
			if srv.ID == raft.ServerID(s.opts.NodeID) {
				return fmt.Errorf("%w: %q at %s clashes with the leader itself", ErrPrecondition, m.Id, m.RaftAddr)
			}
			s.log.Info("removing stale raft server before join", "id", srv.ID, "addr", srv.Address)
			if err := s.raft.RemoveServer(srv.ID, 0, 0).Error(); err != nil {
				return s.raftErr(err)
			}
		}
	}
	var f raft.IndexFuture
	if voter {
		f = s.raft.AddVoter(id, addr, 0, 0)
	} else {
		f = s.raft.AddNonvoter(id, addr, 0, 0)
	}
	return s.raftErr(f.Error())
}

// RemoveMember removes a node from Raft and from the member list. It is
// refused when the remaining voters that are known healthy would not form
// a quorum of the new configuration, unless force is set (etcd's rule).
// The removal leaves a tombstone in the FSM, so a node that is still
// running cannot register itself back (see Join).
func (s *Server) RemoveMember(ctx context.Context, id string, force bool) (uint64, error) {
	if id == "" {
		return 0, fmt.Errorf("%w: id is empty", ErrInvalid)
	}
	if !s.IsLeader() {
		return 0, s.notLeader()
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, s.raftErr(err)
	}
	st := s.fsm.State()
	inRaft := false
	for _, srv := range cf.Configuration().Servers {
		inRaft = inRaft || string(srv.ID) == id
	}
	inFSM := fsm.FindMember(st, id) != nil
	if !inRaft && !inFSM {
		return 0, fmt.Errorf("%w: member %q", ErrNotFound, id)
	}
	if st.Primary.GetMemberId() == id {
		return 0, fmt.Errorf("%w: %q is the primary; switch over first", ErrPrecondition, id)
	}
	if !force {
		if err := s.quorumGuard(cf.Configuration(), id); err != nil {
			return 0, err
		}
	}
	// The tombstone goes in first, even for a server only Raft knows, so
	// the node cannot register itself again between the two steps.
	index, err := s.propose(ctx, &pb.RemoveMember{Id: id, Tombstone: true})
	if err != nil {
		return 0, err
	}
	if inRaft {
		f := s.raft.RemoveServer(raft.ServerID(id), 0, 0)
		if err := f.Error(); err != nil {
			return 0, s.raftErr(err)
		}
		index = max(index, f.Index())
	}
	s.log.Info("member removed", "member", id, "forced", force)
	return index, nil
}

// quorumGuard refuses a removal after which the healthy voters could not
// form a quorum.
func (s *Server) quorumGuard(cfg raft.Configuration, removing string) error {
	now := time.Now()
	healthyWithin := 2 * s.opts.Timing.TTL
	voters, healthy := 0, 0
	for _, srv := range cfg.Servers {
		if srv.Suffrage != raft.Voter || string(srv.ID) == removing {
			continue
		}
		voters++
		if ago, ok := s.contacts.since(string(srv.ID), now); ok && ago <= healthyWithin {
			healthy++
		}
	}
	if need := voters/2 + 1; healthy < need {
		return fmt.Errorf("%w: after removing %q, %d of %d voters are healthy and %d are needed; use force to remove anyway",
			ErrQuorumRisk, removing, healthy, voters, need)
	}
	return nil
}

// Heartbeat records that a member's agent is alive. It runs on the leader.
func (s *Server) Heartbeat(_ context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if req.GetMemberId() == "" {
		return nil, fmt.Errorf("%w: member_id is empty", ErrInvalid)
	}
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	if fsm.FindMember(s.fsm.State(), req.MemberId) == nil {
		// Not registered (yet, or removed): its health would be kept for a
		// member the decider never looks at. The agent registers first.
		return nil, fmt.Errorf("%w: member_id: member %q", ErrNotFound, req.MemberId)
	}
	if s.contacts.report(req.MemberId, req.Postgres, time.Now()) {
		s.wakeLeader()
	}
	return &pb.HeartbeatResponse{Index: s.raft.AppliedIndex()}, nil
}
