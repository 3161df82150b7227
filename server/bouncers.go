package server

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// bouncerAcks is the leader's memory of each bouncer agent: the newest
// epoch it acknowledged (it fenced every older primary) and when it last
// reported. Like member health it lives outside Raft; a new leader starts
// empty and counts an agent's contact lease from its own start.
type bouncerAcks struct {
	mu    sync.Mutex
	since time.Time
	last  map[string]bouncerAck
}

type bouncerAck struct {
	epoch uint64
	at    time.Time
}

func newBouncerAcks() *bouncerAcks { return &bouncerAcks{last: map[string]bouncerAck{}} }

func (b *bouncerAcks) reset(now time.Time) {
	b.mu.Lock()
	b.since, b.last = now, map[string]bouncerAck{}
	b.mu.Unlock()
}

func (b *bouncerAcks) record(id string, epoch uint64, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev := b.last[id]; epoch < prev.epoch {
		epoch = prev.epoch
	}
	b.last[id] = bouncerAck{epoch: epoch, at: now}
}

// view returns, per agent, its acknowledged epoch and how long ago this
// leader last heard of it (or since this leader started, if never).
func (b *bouncerAcks) view(now time.Time) (map[string]bouncerAck, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bouncerAck, len(b.last))
	for id, a := range b.last {
		out[id] = a
	}
	return out, now.Sub(b.since)
}

// BouncerHeartbeat registers a bouncer agent (once, or when its lease or
// databases change), renews its contact and records its acknowledged
// epoch. It runs on the leader and wakes the decider, so the new primary
// is exposed as soon as the last agent fenced.
func (s *Server) BouncerHeartbeat(ctx context.Context, req *pb.BouncerHeartbeatRequest) (*pb.BouncerHeartbeatResponse, error) {
	switch {
	case req.GetAgentId() == "":
		return nil, fmt.Errorf("%w: agent_id is empty", ErrInvalid)
	case req.GetContactLeaseMs() <= 0:
		return nil, fmt.Errorf("%w: contact_lease_ms must be positive", ErrInvalid)
	case req.GetClusterName() != s.opts.ClusterName:
		return nil, fmt.Errorf("%w: agent %s expects cluster %q, this is %q", ErrWrongCluster, req.AgentId, req.ClusterName, s.opts.ClusterName)
	}
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	st := s.fsm.State()
	var have *pb.BouncerAgent
	for _, b := range st.Bouncers {
		if b.Id == req.AgentId {
			have = b
		}
	}
	dbs := append([]string(nil), req.Databases...)
	sort.Strings(dbs)
	if have == nil || have.ContactLeaseMs != req.ContactLeaseMs || !equalStrings(have.Databases, dbs) {
		agent := &pb.BouncerAgent{Id: req.AgentId, ContactLeaseMs: req.ContactLeaseMs, RegisteredAtUnixMs: time.Now().UnixMilli(), Databases: dbs}
		if _, err := s.propose(ctx, &pb.RegisterBouncer{Agent: agent}); err != nil {
			return nil, err
		}
		s.log.Info("bouncer agent registered", "agent", req.AgentId, "contact_lease_ms", req.ContactLeaseMs, "databases", dbs)
	}
	s.bouncers.record(req.AgentId, req.AckedEpoch, time.Now())
	s.wakeLeader()
	st = s.fsm.State()
	return &pb.BouncerHeartbeatResponse{Index: st.Index, Epoch: st.Primary.GetEpoch(), LeaderGrpcAddr: s.opts.GRPCAddr}, nil
}

// UnregisterBouncer forgets an agent (one that was decommissioned).
func (s *Server) UnregisterBouncer(ctx context.Context, id string) (uint64, error) {
	if id == "" {
		return 0, fmt.Errorf("%w: id is empty", ErrInvalid)
	}
	return s.propose(ctx, &pb.UnregisterBouncer{Id: id})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bouncerStatus lists the leader's view of each registered agent.
func (s *Server) bouncerStatus(st *pb.ClusterState, now time.Time) []*pb.BouncerStatus {
	acks, _ := s.bouncers.view(now)
	var out []*pb.BouncerStatus
	for _, b := range st.Bouncers {
		bs := &pb.BouncerStatus{Id: b.Id, ContactLeaseMs: b.ContactLeaseMs, LastContactMs: -1}
		if a, ok := acks[b.Id]; ok {
			bs.AckedEpoch, bs.LastContactMs = a.epoch, now.Sub(a.at).Milliseconds()
		}
		out = append(out, bs)
	}
	return out
}
