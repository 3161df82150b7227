package server

import (
	"context"
	"errors"
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
			s.reconcile(ctx)
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

// reconcile brings the FSM's member list in line with the Raft
// configuration: a member that Raft no longer has (its removal was
// interrupted half way) is dropped from the FSM too.
func (s *Server) reconcile(ctx context.Context) {
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	inRaft := map[string]bool{}
	for _, srv := range cf.Configuration().Servers {
		inRaft[string(srv.ID)] = true
	}
	st := s.fsm.State()
	for _, m := range st.Members {
		if !inRaft[m.Id] && m.Id != st.Primary.GetMemberId() {
			if _, err := s.propose(ctx, &pb.RemoveMember{Id: m.Id}); err != nil {
				s.log.Warn("reconcile: drop member", "member", m.Id, "err", err)
			}
		}
	}
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
