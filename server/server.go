package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// watchHistory is how many recent changes the FSM keeps for watchers that
// resume from an index.
const watchHistory = 1024

// Server is one pgquorum node.
type Server struct {
	opts  Options
	log   *slog.Logger
	fsm   *fsm.FSM
	raft  *raft.Raft
	parts *raftParts

	leaderNotify chan bool
	contacts     *contacts
	lease        *leaseClock
	local        LocalPostgres
	act          *actuator
	bouncers     *bouncerAcks
	callbacks    *callbackRunner
	restarts     restartPlans
	leaderWake   chan struct{}
	nodeWake     chan struct{}

	// leaderIndex is the leader's applied index from this node's last
	// answered heartbeat, at leaderIndexAt (see caughtUpSince).
	leaderIndexMu sync.Mutex
	leaderIndex   uint64
	leaderIndexAt time.Time

	identMu sync.Mutex
	ident   identityFile

	fatalOnce sync.Once
	fatal     chan error

	shutdownOnce sync.Once
}

// New checks the data directory, opens the Raft stores, binds the Raft
// transport and starts Raft. A new node listed in InitialCluster
// bootstraps here. Any problem is returned with what and where; nothing
// on disk is removed to make an error go away.
func New(opts Options) (*Server, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:         opts,
		log:          opts.Logger.With("node", opts.NodeID),
		fsm:          fsm.New(watchHistory),
		leaderNotify: make(chan bool, 16),
		contacts:     newContacts(),
		lease:        &leaseClock{},
		bouncers:     newBouncerAcks(),
		leaderWake:   make(chan struct{}, 1),
		nodeWake:     make(chan struct{}, 1),
		fatal:        make(chan error, 1),
	}
	s.callbacks = newCallbackRunner(opts.Callbacks, opts.ClusterName, s.log)
	if opts.Postgres != nil {
		s.act = newActuator(s, opts.Postgres)
		s.local = s.act
	}
	if err := s.checkIdentity(); err != nil {
		return nil, err
	}
	parts, err := s.openRaftParts()
	if err != nil {
		return nil, err
	}
	s.parts = parts
	times := newLogTimes()
	r, err := raft.NewRaft(s.raftConfig(), observingFSM{FSM: s.fsm, clock: s.lease, times: times},
		timedLogStore{LogStore: parts.logs, times: times}, parts.stable, parts.snaps, parts.trans)
	if err != nil {
		parts.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	if err := s.bootstrapFromList(); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// Run drives the node until ctx ends or the node hits a fatal error (for
// example: its data directory belongs to another cluster). It shuts Raft
// down before it returns.
func (s *Server) Run(ctx context.Context) error {
	defer s.Shutdown()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.restarts.stop()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.monitorLeadership(ctx) }()
	go func() { defer wg.Done(); s.callbacks.run(ctx) }()
	go func() { defer wg.Done(); s.nodeLoop(ctx) }()
	if s.act != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.act.run(ctx) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.fatal:
		s.log.Error("node stopping", "err", err)
	}
	cancel()
	wg.Wait()
	if err == nil {
		s.handOverLeadership()
	}
	return err
}

// handOverLeadership moves Raft leadership to another voter before a
// graceful stop, so a restart (or upgrade) of this agent costs no election
// and the other nodes keep committing, and this node's own restart
// catches up at once.
func (s *Server) handOverLeadership() {
	if !s.IsLeader() {
		return
	}
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	voters := 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		s.log.Warn("leadership transfer before stopping failed", "err", err)
		return
	}
	s.log.Info("leadership handed over before stopping")
}

// fail ends Run with err.
func (s *Server) fail(err error) {
	s.fatalOnce.Do(func() { s.fatal <- err })
}

// Shutdown stops Raft and closes its stores. Safe to call more than once.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				s.log.Warn("raft shutdown", "err", err)
			}
		}
		if s.parts != nil {
			s.parts.close()
		}
	})
}

// NodeID is this node's ID.
func (s *Server) NodeID() string { return s.opts.NodeID }

// IsLeader reports whether this node is the Raft leader.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// caughtUpSince reports whether this node's state holds what the leader
// had applied: it is the leader and has applied its commit index, or a
// heartbeat answered after t reported the leader's applied index and this
// node has applied that far. Without Raft (unit tests) it is always true.
func (s *Server) caughtUpSince(t time.Time) bool {
	if s.raft == nil {
		return true
	}
	applied := s.raft.AppliedIndex()
	if s.raft.State() == raft.Leader {
		return applied >= s.raft.CommitIndex()
	}
	s.leaderIndexMu.Lock()
	defer s.leaderIndexMu.Unlock()
	return s.leaderIndexAt.After(t) && applied >= s.leaderIndex
}

// noteLeaderIndex records the leader's applied index from a heartbeat.
func (s *Server) noteLeaderIndex(index uint64) {
	s.leaderIndexMu.Lock()
	s.leaderIndex, s.leaderIndexAt = index, time.Now()
	s.leaderIndexMu.Unlock()
}

// Leader returns the leader's ID and gRPC address as far as this node
// knows; both are empty when there is no leader.
func (s *Server) Leader() (id, grpcAddr string) {
	_, lid := s.raft.LeaderWithID()
	id = string(lid)
	if id == "" {
		return "", ""
	}
	if id == s.opts.NodeID {
		return id, s.opts.GRPCAddr
	}
	if m := fsm.FindMember(s.fsm.State(), id); m != nil {
		return id, m.GrpcAddr
	}
	return id, ""
}

func (s *Server) notLeader() error {
	id, addr := s.Leader()
	return &NotLeaderError{LeaderID: id, LeaderGRPCAddr: addr}
}

// State returns the committed state. With linearizable, only the leader
// answers, after confirming its leadership and applying all it committed.
func (s *Server) State(ctx context.Context, linearizable bool) (*pb.ClusterState, error) {
	if linearizable {
		if !s.IsLeader() {
			return nil, s.notLeader()
		}
		if err := s.raft.Barrier(s.timeout(ctx)).Error(); err != nil {
			return nil, s.raftErr(err)
		}
	}
	return s.fsm.State(), nil
}

// Subscribe starts a watch; see fsm.FSM.Subscribe.
func (s *Server) Subscribe(fromIndex uint64, buffer int) ([]*pb.WatchEvent, *fsm.Subscription) {
	return s.fsm.Subscribe(fromIndex, buffer)
}

// timeout is how long a quorum operation may take: the caller's deadline,
// or a default that survives one election.
func (s *Server) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 5 * time.Second
}

// raftErr turns Raft's leadership errors into a NotLeaderError.
func (s *Server) raftErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return fmt.Errorf("%w: %v", s.notLeader(), err)
	}
	if errors.Is(err, raft.ErrRaftShutdown) {
		return ErrShutdown
	}
	return err
}

// propose commits a command through Raft on the leader and returns the
// index it was applied at, or the FSM's refusal.
func (s *Server) propose(ctx context.Context, cmd proto.Message) (uint64, error) {
	if !s.IsLeader() {
		return 0, s.notLeader()
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	f := s.raft.Apply(data, s.timeout(ctx))
	if err := f.Error(); err != nil {
		return 0, s.raftErr(err)
	}
	res := f.Response().(fsm.Result)
	return res.Index, res.Err
}

// wakeLeader asks the leader loop for a round now.
func (s *Server) wakeLeader() {
	select {
	case s.leaderWake <- struct{}{}:
	default:
	}
}

// wakeNode asks the node loop for a heartbeat now (the actuator changed
// something the decider waits for).
func (s *Server) wakeNode() {
	select {
	case s.nodeWake <- struct{}{}:
	default:
	}
}
