package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// nodeLoop runs on every node, leader or not: it finishes bootstrap
// (bootstrap-expect or join), checks the cluster identity, keeps this
// node's member record current and heartbeats the leader.
func (s *Server) nodeLoop(ctx context.Context) {
	tick := time.NewTicker(s.opts.Timing.LoopWait)
	defer tick.Stop()
	joined := s.hasState()
	var removed removedNotice
	for {
		if !joined {
			joined = s.tryBootstrapOrJoin(ctx, &removed)
		} else {
			s.nodeTick(ctx, &removed)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.nodeWake:
		}
	}
}

// tryBootstrapOrJoin makes a node without Raft state part of a cluster.
// A node that an operator removed keeps asking (quietly) so that it joins
// once `ctl members add` lets it back in.
func (s *Server) tryBootstrapOrJoin(ctx context.Context, removed *removedNotice) bool {
	if s.hasState() {
		return true
	}
	if s.opts.Expect > 0 {
		done, joinInstead := s.discover(ctx)
		if done || !joinInstead {
			return done
		}
	}
	if len(s.opts.Join) == 0 {
		// Listed in initial_cluster and bootstrapped, or waiting for a
		// leader to add us: nothing to do until Raft has state.
		return false
	}
	if err := s.joinVia(ctx, s.opts.Join); err != nil {
		if errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrInvalid) {
			s.fail(fmt.Errorf("join refused: %w", err))
			return false
		}
		if errors.Is(err, fsm.ErrMemberRemoved) {
			removed.note(s.log, true, 0, err.Error())
			return false
		}
		s.log.Warn("join failed, will retry", "err", err)
		return false
	}
	removed.note(s.log, false, 0, "")
	return true
}

// errNoTarget: no member address is known yet to send a request to.
var errNoTarget = errors.New("no member address known yet")

// joinVia sends this node's Join to each address in turn until one
// accepts (followers forward it to the leader).
func (s *Server) joinVia(ctx context.Context, addrs []string) error {
	req := &pb.JoinRequest{ClusterName: s.opts.ClusterName, Member: s.opts.self(s.opts.RaftAdvertiseAddr)}
	var errs []error
	for _, addr := range addrs {
		if addr == "" || addr == s.opts.GRPCAddr {
			continue
		}
		c, err := s.opts.Dial(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Join(cctx, req)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, fromStatus(err)))
			continue
		}
		s.log.Info("joined cluster", "via", addr, "cluster_uuid", resp.GetIdentity().GetUuid())
		return nil
	}
	if len(errs) == 0 {
		return errNoTarget
	}
	return errors.Join(errs...)
}

// removedNotice remembers that an operator removed this node, so the node
// loop says so once and stops registering itself until the node is added
// back (docs/operations.md: a removed member does not come back by itself).
type removedNotice struct {
	removed bool
	// index is the applied index of this node's state when it learned it
	// was removed: only a state newer than that can show it added back.
	index uint64
}

// note records whether the node is removed, as of the state at index, and
// logs each change once.
func (r *removedNotice) note(log *slog.Logger, removed bool, index uint64, why string) {
	switch {
	case removed && !r.removed:
		log.Error("this node was removed from the cluster by an operator and may not come back by itself; it keeps running; "+
			"to bring it back run `pgquorum ctl members add` for it, or stop it", "why", why)
	case !removed && r.removed:
		log.Info("this node was added back to the cluster")
	}
	r.removed, r.index = removed, index
}

// nodeTick is one round of the node loop once this node has Raft state.
func (s *Server) nodeTick(ctx context.Context, removed *removedNotice) {
	st := s.fsm.State()
	if err := s.noteClusterUUID(st.Identity.GetUuid()); err != nil {
		s.fail(err)
		return
	}
	self := fsm.FindMember(st, s.opts.NodeID)
	if t := fsm.FindTombstone(st, s.opts.NodeID); t != nil {
		removed.note(s.log, true, st.Index, fmt.Sprintf("the cluster state holds its removal at index %d", t.Index))
		return
	}
	if removed.removed {
		if self == nil || st.Index <= removed.index {
			// The leader refused our registration as removed, and our
			// copy of the state has not shown an explicit add since.
			return
		}
		removed.note(s.log, false, st.Index, "")
	}
	var health *pb.PostgresHealth
	if s.act != nil {
		health = s.act.Health()
	}
	if s.IsLeader() {
		if s.contacts.report(s.opts.NodeID, health, time.Now()) {
			s.wakeLeader()
		}
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timing.RetryTimeout)
	defer cancel()
	leaderID, leaderAddr := s.Leader()
	if !sameMember(self, s.opts.self(s.opts.RaftAdvertiseAddr)) {
		// Our record is missing or stale (new addresses, tags, suffrage).
		// With no leader in sight (say, our Raft address changed), any
		// member can forward the registration.
		err := s.joinVia(cctx, s.registrationTargets(st, leaderAddr))
		switch {
		case errors.Is(err, fsm.ErrMemberRemoved):
			removed.note(s.log, true, st.Index, err.Error())
			return
		case err != nil && !errors.Is(err, errNoTarget):
			s.log.Warn("member registration failed", "err", err)
		}
	}
	if leaderID == "" || leaderAddr == "" {
		return
	}
	c, err := s.opts.Dial(leaderAddr)
	if err != nil {
		return
	}
	resp, err := c.Heartbeat(cctx, &pb.HeartbeatRequest{MemberId: s.opts.NodeID, AppliedIndex: s.raft.AppliedIndex(), Postgres: health})
	if err != nil {
		s.log.Debug("heartbeat failed", "leader", leaderID, "err", err)
		return
	}
	s.noteLeaderIndex(resp.GetIndex())
}

// registrationTargets lists where to send our registration: the leader
// when known, else every other member and the configured join addresses.
func (s *Server) registrationTargets(st *pb.ClusterState, leaderAddr string) []string {
	if leaderAddr != "" {
		return []string{leaderAddr}
	}
	var out []string
	for _, m := range st.Members {
		if m.Id != s.opts.NodeID {
			out = append(out, m.GrpcAddr)
		}
	}
	return append(out, s.opts.Join...)
}

// remoteStatus asks a peer for its status.
func (s *Server) remoteStatus(ctx context.Context, addr string) (*pb.NodeStatus, error) {
	c, err := s.opts.Dial(addr)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Status(cctx, &pb.StatusRequest{})
}
