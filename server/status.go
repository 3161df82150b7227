package server

import (
	"time"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// Status reports this node's view of Raft.
func (s *Server) Status() *pb.NodeStatus {
	st := s.fsm.State()
	leaderAddr, leaderID := s.raft.LeaderWithID()
	_, leaderGRPC := s.Leader()
	ns := &pb.NodeStatus{
		NodeId:         s.opts.NodeID,
		RaftState:      s.raft.State().String(),
		Term:           s.raft.CurrentTerm(),
		LeaderId:       string(leaderID),
		LeaderRaftAddr: string(leaderAddr),
		LeaderGrpcAddr: leaderGRPC,
		CommitIndex:    s.raft.CommitIndex(),
		AppliedIndex:   s.raft.AppliedIndex(),
		LastLogIndex:   s.raft.LastIndex(),
		ClusterName:    s.opts.ClusterName,
		ClusterUuid:    st.Identity.GetUuid(),
		Version:        s.opts.Version,
		RaftAddr:       s.opts.RaftAdvertiseAddr,
		GrpcAddr:       s.opts.GRPCAddr,
		HasState:       s.hasState(),
		Suffrage:       s.opts.self(s.opts.RaftAdvertiseAddr).Suffrage,
	}
	isLeader := s.IsLeader()
	if isLeader {
		ns.ScheduledRestart = s.restarts.scheduledRequest()
	}
	if !isLeader {
		if t := s.raft.LastContact(); !t.IsZero() {
			ns.LastLeaderContactMs = time.Since(t).Milliseconds()
		}
	}
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return ns
	}
	now := time.Now()
	if isLeader {
		ns.Bouncers = s.bouncerStatus(st, now)
	}
	for _, srv := range cf.Configuration().Servers {
		p := &pb.PeerStatus{
			Id: string(srv.ID), RaftAddr: string(srv.Address),
			Suffrage: pb.Suffrage_SUFFRAGE_VOTER, LastContactMs: -1,
			IsLeader: srv.ID == leaderID,
		}
		if srv.Suffrage != raft.Voter {
			p.Suffrage = pb.Suffrage_SUFFRAGE_NONVOTER
		}
		if isLeader {
			if ago, ok := s.contacts.since(string(srv.ID), now); ok {
				p.LastContactMs = ago.Milliseconds()
			}
		}
		ns.Peers = append(ns.Peers, p)
	}
	return ns
}
