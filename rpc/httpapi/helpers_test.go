package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"google.golang.org/protobuf/proto"
)

// fakeNode is a Node whose answers the test sets.
type fakeNode struct {
	opts     server.Options
	status   *pb.NodeStatus
	state    *pb.ClusterState
	health   *pb.PostgresHealth
	leaseAge time.Duration
}

func (n *fakeNode) NodeID() string                  { return n.opts.NodeID }
func (n *fakeNode) Options() server.Options         { return n.opts }
func (n *fakeNode) Status() *pb.NodeStatus          { return n.status }
func (n *fakeNode) LocalHealth() *pb.PostgresHealth { return n.health }
func (n *fakeNode) LeaseAge() time.Duration         { return n.leaseAge }
func (n *fakeNode) State(context.Context, bool) (*pb.ClusterState, error) {
	return n.state, nil
}

const (
	mib        = 1 << 20
	primaryWAL = 5 * mib
	epoch      = 3
)

// baseState is a cluster of n1 (primary, epoch 3), n2 (sync standby),
// n3 (async standby) and w1 (witness).
func baseState() *pb.ClusterState {
	return &pb.ClusterState{
		Identity: &pb.ClusterIdentity{Name: "demo", Uuid: "u-1"},
		Members: []*pb.Member{
			{Id: "n1", GrpcAddr: "n1:7101", PgAddr: "10.0.0.1:5432", HttpAddr: "10.0.0.1:8008", Role: pb.MemberRole_MEMBER_ROLE_POSTGRES},
			{Id: "n2", GrpcAddr: "n2:7101", PgAddr: "10.0.0.2:5432", Role: pb.MemberRole_MEMBER_ROLE_POSTGRES},
			{Id: "n3", GrpcAddr: "n3:7101", PgAddr: "10.0.0.3:5432", Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Tags: &pb.Tags{FailoverPriority: 2}},
			{Id: "w1", GrpcAddr: "w1:7101", Role: pb.MemberRole_MEMBER_ROLE_WITNESS},
		},
		Config:  &pb.DynamicConfig{Version: 1, MaximumLagOnFailoverBytes: mib},
		Primary: &pb.PrimaryAssignment{MemberId: "n1", Epoch: epoch, Timeline: 2, LeaseSeq: 7},
		Sync:    &pb.SyncState{Epoch: epoch, Members: []string{"n2"}},
		History: []*pb.HistoryEntry{
			{Epoch: 1, NewMember: "n1", Reason: "bootstrap"},
			{Epoch: 2, OldMember: "n1", NewMember: "n2", Reason: "failover: lease of n1 (epoch 1) expired"},
			{Epoch: 3, OldMember: "n2", NewMember: "n1", Reason: "switchover from n2"},
		},
	}
}

func primaryHealth() *pb.PostgresHealth {
	return &pb.PostgresHealth{State: pb.PgState_PG_STATE_RUNNING, Timeline: 2, WalLsn: primaryWAL, AppliedEpoch: epoch,
		SystemIdentifier: 7000000000000000001,
		Replicas: []*pb.ReplicaHealth{
			{ApplicationName: "n2", SyncState: "sync", State: "streaming", ReplayLsn: primaryWAL},
			{ApplicationName: "n3", SyncState: "async", State: "streaming", ReplayLsn: primaryWAL - 4096},
		}}
}

func standbyHealth(replay uint64) *pb.PostgresHealth {
	return &pb.PostgresHealth{State: pb.PgState_PG_STATE_RUNNING, InRecovery: true, Timeline: 2,
		ReceiveLsn: replay, ReplayLsn: replay, WalLsn: replay, AppliedEpoch: epoch}
}

// newFake returns node id of baseState with the given health.
func newFake(id string, h *pb.PostgresHealth) *fakeNode {
	role := pb.MemberRole_MEMBER_ROLE_POSTGRES
	if id == "w1" {
		role = pb.MemberRole_MEMBER_ROLE_WITNESS
	}
	raftState := "Follower"
	if id == "n1" {
		raftState = "Leader"
	}
	return &fakeNode{
		opts: server.Options{NodeID: id, ClusterName: "demo", Version: "v0.test", Role: role, Tags: &pb.Tags{},
			Timing: server.Timing{TTL: 10 * time.Second, SafetyMargin: 2 * time.Second, LoopWait: time.Second, RetryTimeout: time.Second}},
		status: &pb.NodeStatus{NodeId: id, RaftState: raftState, Term: 4, LeaderId: "n1", CommitIndex: 42, AppliedIndex: 42, LastLogIndex: 42,
			Peers: []*pb.PeerStatus{{Id: "n1", LastContactMs: -1}, {Id: "n2", LastContactMs: 100}, {Id: "n3", LastContactMs: 60000}, {Id: "w1", LastContactMs: 200}}},
		state:    baseState(),
		health:   h,
		leaseAge: time.Second,
	}
}

// fakeProbe answers probes from a table of health by gRPC address, and
// counts them.
type fakeProbe struct {
	mu     sync.Mutex
	health map[string]*pb.PostgresHealth
	calls  int
}

func newProbe() *fakeProbe {
	return &fakeProbe{health: map[string]*pb.PostgresHealth{
		"n1:7101": primaryHealth(),
		"n2:7101": standbyHealth(primaryWAL),
		"n3:7101": standbyHealth(primaryWAL - 4096),
	}}
}

func (p *fakeProbe) probe(_ context.Context, addr string) (*pb.PostgresHealth, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	h, ok := p.health[addr]
	if !ok {
		return nil, errors.New("unreachable")
	}
	return proto.Clone(h).(*pb.PostgresHealth), nil
}

func (p *fakeProbe) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

func newHandler(t *testing.T, n *fakeNode, p *fakeProbe) *Handler {
	t.Helper()
	if p == nil {
		p = newProbe()
	}
	return New(n, Config{Probe: p.probe})
}

func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}
