package server

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// hasState reports whether this node has bootstrapped or joined before.
func (s *Server) hasState() bool {
	ok, err := raft.HasExistingState(s.parts.logs, s.parts.stable, s.parts.snaps)
	return err == nil && ok
}

// bootstrapFromList bootstraps a brand-new node that is listed in
// InitialCluster. Every listed node does the same with the same list, which
// hashicorp/raft accepts; a node with existing state skips it, so a restart
// never re-bootstraps.
func (s *Server) bootstrapFromList() error {
	if len(s.opts.InitialCluster) == 0 || s.hasState() {
		return nil
	}
	listed := false
	for _, srv := range s.opts.InitialCluster {
		if string(srv.ID) == s.opts.NodeID {
			listed = true
		}
	}
	if !listed {
		if len(s.opts.Join) == 0 {
			return fmt.Errorf("%w: node %q is not in bootstrap.initial_cluster and bootstrap.join is empty", ErrInvalid, s.opts.NodeID)
		}
		return nil
	}
	cfg := raft.Configuration{Servers: append([]raft.Server(nil), s.opts.InitialCluster...)}
	if err := s.raft.BootstrapCluster(cfg).Error(); err != nil && err != raft.ErrCantBootstrap {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	s.log.Info("bootstrapped new cluster", "servers", len(cfg.Servers))
	return nil
}

// discover implements bootstrap-expect: it asks every Join address for
// its status until exactly Expect voters of this cluster (this one
// included) know each other, then bootstraps them all as voters. If a peer
// of this cluster already has state, the cluster exists and this node
// joins instead. It returns true when this node is done with bootstrapping.
func (s *Server) discover(ctx context.Context) (bootstrapped bool, joinInstead bool) {
	var peers []*pb.NodeStatus
	for _, addr := range s.opts.Join {
		if addr == s.opts.GRPCAddr {
			continue
		}
		st, err := s.remoteStatus(ctx, addr)
		if err != nil {
			s.log.Debug("bootstrap-expect: peer not ready", "addr", addr, "err", err)
			continue
		}
		peers = append(peers, st)
	}
	self := raft.Server{ID: raft.ServerID(s.opts.NodeID), Address: raft.ServerAddress(s.opts.RaftAdvertiseAddr), Suffrage: raft.Voter}
	plan := planExpect(self, s.opts.ClusterName, s.opts.Expect, peers)
	for _, why := range plan.skipped {
		s.log.Warn("bootstrap-expect: peer not counted", "why", why)
	}
	switch {
	case plan.joinInstead:
		return false, true
	case plan.wait != "":
		s.log.Info("bootstrap-expect: not bootstrapping yet", "why", plan.wait)
		return false, false
	}
	if err := s.raft.BootstrapCluster(plan.cfg).Error(); err != nil && err != raft.ErrCantBootstrap {
		s.log.Error("bootstrap-expect: bootstrap failed", "err", err)
		return false, false
	}
	ids := make([]string, 0, len(plan.cfg.Servers))
	for _, srv := range plan.cfg.Servers {
		ids = append(ids, string(srv.ID))
	}
	s.log.Info("bootstrap-expect: bootstrapped", "servers", ids)
	return true, false
}

// expectPlan is what bootstrap-expect does after one round of asking the
// join addresses: join an existing cluster, wait (and why), or bootstrap
// cfg. skipped says why answers were not counted.
type expectPlan struct {
	joinInstead bool
	wait        string
	cfg         raft.Configuration
	skipped     []string
}

// planExpect decides bootstrap-expect from the peers' answers. Only voters
// of this cluster without state count; the node bootstraps only when
// exactly expect voters are known (more means the join list or expect is
// wrong, and bootstrapping would split the voters between two clusters or
// size the quorum wrongly). Every node computes the same sorted
// configuration from the same answers.
func planExpect(self raft.Server, cluster string, expect int, peers []*pb.NodeStatus) expectPlan {
	var p expectPlan
	found := map[raft.ServerID]raft.ServerAddress{self.ID: self.Address}
	for _, st := range peers {
		id, addr := raft.ServerID(st.GetNodeId()), raft.ServerAddress(st.GetRaftAddr())
		switch {
		case st.GetClusterName() != cluster:
			p.skipped = append(p.skipped, fmt.Sprintf("%s at %s belongs to cluster %q, this node to %q", id, st.GetGrpcAddr(), st.GetClusterName(), cluster))
			continue
		case st.GetHasState():
			p.joinInstead = true
			return p
		case id == "" || addr == "":
			p.skipped = append(p.skipped, fmt.Sprintf("the peer at %s has no node ID or Raft address yet", st.GetGrpcAddr()))
			continue
		case st.GetSuffrage() == pb.Suffrage_SUFFRAGE_NONVOTER:
			p.skipped = append(p.skipped, fmt.Sprintf("%s is a non-voter; bootstrap-expect counts voters", id))
			continue
		case id == self.ID:
			p.skipped = append(p.skipped, fmt.Sprintf("the peer at %s has this node's ID %q", st.GetGrpcAddr(), id))
			continue
		}
		if have, ok := found[id]; ok && have != addr {
			p.wait = fmt.Sprintf("node %s answers from two Raft addresses (%s, %s)", id, have, addr)
			return p
		}
		found[id] = addr
	}
	if len(found) != expect {
		p.wait = fmt.Sprintf("found %d voters of cluster %q, bootstrap.expect is %d", len(found), cluster, expect)
		if len(found) > expect {
			p.wait += ": more than expected, check bootstrap.expect and bootstrap.join"
		}
		return p
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, string(id))
	}
	sort.Strings(ids)
	for _, id := range ids {
		p.cfg.Servers = append(p.cfg.Servers, raft.Server{ID: raft.ServerID(id), Address: found[raft.ServerID(id)], Suffrage: raft.Voter})
	}
	return p
}
