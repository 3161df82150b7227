package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// monitorLeadership drains Raft's leadership notifications and runs the
// leader loop while this node leads. NotifyCh is buffered and drained by
// this one goroutine, so Raft never blocks on us; control flow never uses
// LeaderCh.
func (s *Server) monitorLeadership(ctx context.Context) {
	var running *leaderRun
	defer func() { running.stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-s.leaderNotify:
			switch {
			case isLeader && running == nil:
				running = s.startLeaderLoop(ctx)
				s.log.Info("leader loop started", "term", s.raft.CurrentTerm())
			case !isLeader && running != nil:
				running.stop()
				running = nil
				s.log.Info("leader loop stopped")
			}
		}
	}
}

// leaderRun is one running leader loop.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) startLeaderLoop(ctx context.Context) *leaderRun {
	lctx, cancel := context.WithCancel(ctx)
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); s.leaderLoop(lctx) }()
	return r
}

// stop cancels the loop and waits for it; nil-safe.
func (r *leaderRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// leaderLoop runs while this node leads. It first waits on a Barrier so
// the FSM holds everything earlier leaders committed, then establishes the
// cluster (identity, own member record) and reconciles every LoopWait.
func (s *Server) leaderLoop(ctx context.Context) {
	s.contacts.reset()
	s.contacts.touch(s.opts.NodeID, time.Now())
	s.bouncers.reset(time.Now())
	tick := time.NewTicker(s.opts.Timing.LoopWait)
	defer tick.Stop()
	// Every committed change may unblock a decision (a released lease, a
	// requested switchover): decide at once rather than at the next tick.
	_, sub := s.fsm.Subscribe(^uint64(0), 64)
	defer func() { sub.Close() }()
	established := false
	d := &decider{}
	stale := map[string]time.Time{} // see reconcile
	for {
		if !established {
			if err := s.raft.Barrier(s.opts.Timing.RetryTimeout * 5).Error(); err != nil {
				s.log.Warn("leader barrier failed", "err", err)
			} else if err := s.establish(ctx); err != nil {
				s.log.Warn("establishing leadership failed", "err", err)
			} else {
				established = true
			}
		}
		if established {
			s.reconcile(ctx, stale, time.Now())
			s.decideOnce(ctx, d)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.leaderWake:
		case _, ok := <-sub.C:
			if !ok {
				_, sub = s.fsm.Subscribe(^uint64(0), 64)
			}
		}
	}
}

// establish initializes a new cluster and records this node's member
// entry.
func (s *Server) establish(ctx context.Context) error {
	st := s.fsm.State()
	if st.Identity.GetUuid() == "" {
		cfg := s.opts.InitialConfig
		if cfg == nil {
			cfg = DefaultDynamicConfig()
		}
		cmd := &pb.InitCluster{Name: s.opts.ClusterName, Uuid: uuid.NewString(), AtUnixMs: time.Now().UnixMilli(), InitialConfig: cfg}
		if _, err := s.propose(ctx, cmd); err != nil && !errors.Is(err, fsm.ErrAlreadyInitialized) {
			return err
		}
		s.log.Info("cluster initialized", "cluster", s.opts.ClusterName, "uuid", cmd.Uuid)
	}
	if fsm.FindTombstone(st, s.opts.NodeID) != nil {
		// An operator removed this node, but the removal was interrupted
		// before Raft dropped it, and it was elected: it may not register
		// itself again, so it cannot lead. Another voter takes over and
		// finishes the removal (reconcile).
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Warn("removed member leads; leadership transfer failed", "err", err)
		}
		return fmt.Errorf("%w: %s was removed from the cluster; handing leadership over", ErrPrecondition, s.opts.NodeID)
	}
	return s.registerSelfLocally(ctx)
}

// registerSelfLocally writes this node's member record when it differs.
func (s *Server) registerSelfLocally(ctx context.Context) error {
	want := s.opts.self(s.opts.RaftAdvertiseAddr)
	have := fsm.FindMember(s.fsm.State(), s.opts.NodeID)
	if sameMember(have, want) {
		return nil
	}
	want.RegisteredAtUnixMs = time.Now().UnixMilli()
	_, err := s.propose(ctx, &pb.UpsertMember{Member: want})
	return err
}

// sameMember compares member records, ignoring the registration time.
func sameMember(a, b *pb.Member) bool {
	if a == nil || b == nil {
		return a == b
	}
	a, b = proto.Clone(a).(*pb.Member), proto.Clone(b).(*pb.Member)
	a.RegisteredAtUnixMs, b.RegisteredAtUnixMs = 0, 0
	return proto.Equal(a, b)
}

// reconcile brings the FSM's member list and the Raft configuration in
// line after an operator's removal was interrupted half way: a member that
// Raft no longer has is dropped from the FSM too, and a server that Raft
// still has although its removal committed (its tombstone) is removed from
// Raft. A readmit (ctl members add) adds the server to Raft a moment before
// it clears the tombstone, so only a server seen in that state for more
// than staleVoterGrace is removed; stale holds when each was first seen
// (leader memory, like every health timer).
func (s *Server) reconcile(ctx context.Context, stale map[string]time.Time, now time.Time) {
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	st := s.fsm.State()
	inRaft := map[string]bool{}
	for _, srv := range cf.Configuration().Servers {
		id := string(srv.ID)
		inRaft[id] = true
		if fsm.FindTombstone(st, id) == nil {
			delete(stale, id)
			continue
		}
		since, seen := stale[id]
		if !seen {
			stale[id] = now
			continue
		}
		if now.Sub(since) < staleVoterGrace(s.opts.Timing.LoopWait) {
			continue
		}
		if id == s.opts.NodeID {
			// This leader itself was removed (see establish); a removal
			// of itself through RemoveMember would have stepped it down
			// by now. Hand over: the next leader finishes the removal.
			s.log.Info("reconcile: this member was removed; handing leadership over")
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("removed member leads; leadership transfer failed", "err", err)
			}
			return
		}
		s.log.Info("reconcile: finishing an interrupted removal", "member", id)
		if err := s.raft.RemoveServer(srv.ID, 0, s.opts.Timing.RetryTimeout).Error(); err != nil {
			s.log.Warn("reconcile: remove server", "member", id, "err", err)
			continue
		}
		delete(stale, id)
	}
	for id := range stale {
		if !inRaft[id] {
			delete(stale, id)
		}
	}
	for _, m := range st.Members {
		if !inRaft[m.Id] && m.Id != st.Primary.GetMemberId() {
			if _, err := s.propose(ctx, &pb.RemoveMember{Id: m.Id}); err != nil {
				s.log.Warn("reconcile: drop member", "member", m.Id, "err", err)
			}
		}
	}
}

// staleVoterGrace is how long reconcile leaves a tombstoned server in the
// Raft configuration before it finishes the removal: far longer than a
// readmit's two steps take.
func staleVoterGrace(loopWait time.Duration) time.Duration {
	return max(10*loopWait, 5*time.Second)
}

// DefaultDynamicConfig is the dynamic configuration of a new cluster.
func DefaultDynamicConfig() *pb.DynamicConfig {
	return &pb.DynamicConfig{
		SynchronousMode:           pb.SynchronousMode_SYNCHRONOUS_MODE_OFF,
		SynchronousNodeCount:      1,
		MaximumLagOnFailoverBytes: 1 << 20,
		PrimaryStartTimeoutMs:     30000,
		PostgresParameters:        map[string]string{},
	}
}
