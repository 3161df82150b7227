package server

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/raft"
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
// its identity until Expect nodes (this one included) know each other,
// then bootstraps them all as voters. If any peer already has state, the
// cluster exists and this node joins instead. It returns true when this
// node is done with bootstrapping.
func (s *Server) discover(ctx context.Context) (bootstrapped bool, joinInstead bool) {
	found := map[string]raft.ServerAddress{s.opts.NodeID: raft.ServerAddress(s.opts.RaftAdvertiseAddr)}
	for _, addr := range s.opts.Join {
		if addr == s.opts.GRPCAddr {
			continue
		}
		st, err := s.remoteStatus(ctx, addr)
		if err != nil {
			s.log.Debug("bootstrap-expect: peer not ready", "addr", addr, "err", err)
			continue
		}
		if st.HasState {
			return false, true
		}
		if st.NodeId != "" && st.RaftAddr != "" {
			found[st.NodeId] = raft.ServerAddress(st.RaftAddr)
		}
	}
	if len(found) < s.opts.Expect {
		s.log.Info("bootstrap-expect: waiting for peers", "found", len(found), "expect", s.opts.Expect)
		return false, false
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var cfg raft.Configuration
	for _, id := range ids {
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(id), Address: found[id], Suffrage: raft.Voter})
	}
	if err := s.raft.BootstrapCluster(cfg).Error(); err != nil && err != raft.ErrCantBootstrap {
		s.log.Error("bootstrap-expect: bootstrap failed", "err", err)
		return false, false
	}
	s.log.Info("bootstrap-expect: bootstrapped", "servers", ids)
	return true, false
}
