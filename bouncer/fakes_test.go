package bouncer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// journal is one ordered log shared by the fake quorum and the fake
// router, so that tests can check what happened before what.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	j.lines = append(j.lines, fmt.Sprintf(format, args...))
	j.mu.Unlock()
}

func (j *journal) snapshot() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.lines...)
}

// index returns the position of the first line with prefix, or -1.
func (j *journal) index(prefix string) int {
	for i, l := range j.snapshot() {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func (j *journal) count(prefix string) int {
	n := 0
	for _, l := range j.snapshot() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// fakeQuorum is a scripted cluster: a state changed by deltas, served to
// Watch streams, and a record of bouncer heartbeats.
type fakeQuorum struct {
	t    testing.TB
	name string
	j    *journal

	mu      sync.Mutex
	st      *pb.ClusterState
	log     []*pb.WatchEvent
	subs    map[chan *pb.WatchEvent]struct{}
	down    map[string]bool // endpoint → refuses everything
	acked   map[string]uint64
	lastHB  time.Time
	hbCount int
	leader  string // endpoint the heartbeat answers name as the leader's
}

func newFakeQuorum(t testing.TB, name string, j *journal) *fakeQuorum {
	st := &pb.ClusterState{Identity: &pb.ClusterIdentity{Name: name, Uuid: "uuid-" + name}, Index: 1}
	return &fakeQuorum{t: t, name: name, j: j, st: st, subs: map[chan *pb.WatchEvent]struct{}{},
		down: map[string]bool{}, acked: map[string]uint64{}}
}

// apply commits a delta and pushes it to the watchers.
func (q *fakeQuorum) apply(d *pb.StateDelta) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ev := &pb.WatchEvent{Index: q.st.Index + 1, Kind: &pb.WatchEvent_Delta{Delta: d}}
	q.st = fsm.ApplyEvent(q.st, ev)
	q.log = append(q.log, ev)
	for ch := range q.subs {
		ch <- ev
	}
}

func (q *fakeQuorum) member(id, pgAddr string) {
	q.apply(&pb.StateDelta{UpsertedMembers: []*pb.Member{{Id: id, PgAddr: pgAddr, Role: pb.MemberRole_MEMBER_ROLE_POSTGRES}}})
}

// assign makes id primary at the next epoch, like AssignPrimary.
func (q *fakeQuorum) assign(id, reason string) uint64 {
	q.mu.Lock()
	p := q.st.Primary
	epoch := p.GetEpoch() + 1
	old := p.GetMemberId()
	switchover := q.st.Switchover != nil
	q.mu.Unlock()
	np := &pb.PrimaryAssignment{MemberId: id, Epoch: epoch, Reason: reason}
	q.apply(&pb.StateDelta{Primary: np, SwitchoverCleared: switchover,
		History: &pb.HistoryEntry{Epoch: epoch, OldMember: old, NewMember: id, Reason: reason}})
	return epoch
}

func (q *fakeQuorum) primary() *pb.PrimaryAssignment {
	q.mu.Lock()
	defer q.mu.Unlock()
	return proto.Clone(q.st.Primary).(*pb.PrimaryAssignment)
}

func (q *fakeQuorum) expose() {
	p := q.primary()
	p.Exposed = true
	q.apply(&pb.StateDelta{Primary: p})
}

func (q *fakeQuorum) release() {
	p := q.primary()
	p.Released = true
	q.apply(&pb.StateDelta{Primary: p})
}

func (q *fakeQuorum) steppingDown(to string) {
	p := q.primary()
	q.apply(&pb.StateDelta{Switchover: &pb.Switchover{From: p.MemberId, To: to, Epoch: p.Epoch, SteppingDown: true}})
}

func (q *fakeQuorum) setLeader(ep string) {
	q.mu.Lock()
	q.leader = ep
	q.mu.Unlock()
}

func (q *fakeQuorum) setDown(ep string, down bool) {
	q.mu.Lock()
	q.down[ep] = down
	q.mu.Unlock()
}

func (q *fakeQuorum) ackedBy(agent string) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked[agent]
}

func (q *fakeQuorum) heartbeats() (int, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.hbCount, q.lastHB
}

// client returns the fake member at ep.
func (q *fakeQuorum) client(ep string) pb.AdminClient { return &fakeMember{q: q, ep: ep} }

// fakeMember is one member's gRPC client. Methods the agent does not call
// panic (the embedded interface is nil).
type fakeMember struct {
	pb.AdminClient
	q  *fakeQuorum
	ep string
}

func (m *fakeMember) BouncerHeartbeat(ctx context.Context, req *pb.BouncerHeartbeatRequest, _ ...grpc.CallOption) (*pb.BouncerHeartbeatResponse, error) {
	q := m.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down[m.ep] {
		return nil, status.Error(codes.Unavailable, "member down")
	}
	if req.ClusterName != q.name {
		return nil, status.Errorf(codes.FailedPrecondition, "wrong cluster %q", req.ClusterName)
	}
	if req.AckedEpoch > q.acked[req.AgentId] {
		q.acked[req.AgentId] = req.AckedEpoch
		q.j.add("ack %s %d", q.name, req.AckedEpoch)
	}
	q.hbCount++
	q.lastHB = time.Now()
	return &pb.BouncerHeartbeatResponse{Index: q.st.Index, Epoch: q.st.Primary.GetEpoch(), LeaderGrpcAddr: q.leader}, nil
}

func (m *fakeMember) Watch(ctx context.Context, req *pb.WatchRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[pb.WatchEvent], error) {
	q := m.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.down[m.ep] {
		return nil, status.Error(codes.Unavailable, "member down")
	}
	ch := make(chan *pb.WatchEvent, 1000)
	if req.FromIndex == 0 || req.FromIndex > q.st.Index || len(q.log) == 0 || req.FromIndex < q.log[0].Index-1 {
		ch <- &pb.WatchEvent{Index: q.st.Index, Kind: &pb.WatchEvent_Snapshot{Snapshot: proto.Clone(q.st).(*pb.ClusterState)}}
	} else {
		for _, ev := range q.log {
			if ev.Index > req.FromIndex {
				ch <- ev
			}
		}
	}
	q.subs[ch] = struct{}{}
	return &fakeStream{ctx: ctx, ch: ch, m: m}, nil
}

// fakeStream serves one Watch from a channel; it ends when the member goes
// down or ctx ends.
type fakeStream struct {
	grpc.ClientStream
	ctx context.Context
	ch  chan *pb.WatchEvent
	m   *fakeMember
}

func (s *fakeStream) Recv() (*pb.WatchEvent, error) {
	defer func() {}()
	for {
		select {
		case ev := <-s.ch:
			return ev, nil
		case <-s.ctx.Done():
			s.close()
			return nil, status.FromContextError(s.ctx.Err()).Err()
		case <-time.After(5 * time.Millisecond):
			s.m.q.mu.Lock()
			down := s.m.q.down[s.m.ep]
			s.m.q.mu.Unlock()
			if down {
				s.close()
				return nil, status.Error(codes.Unavailable, "member down")
			}
		}
	}
}

func (s *fakeStream) close() {
	s.m.q.mu.Lock()
	delete(s.m.q.subs, s.ch)
	s.m.q.mu.Unlock()
}

// fakeRouter applies the Router's epoch rules in memory and journals every
// call that changed something.
type fakeRouter struct {
	j *journal

	mu      sync.Mutex
	dbs     map[string]*Status
	pauseCh chan struct{} // when set, planned fences block until it is closed or ctx ends
	tuned   int
}

func newFakeRouter(j *journal) *fakeRouter { return &fakeRouter{j: j, dbs: map[string]*Status{}} }

func (r *fakeRouter) st(db string) *Status {
	s, ok := r.dbs[db]
	if !ok {
		s = &Status{}
		r.dbs[db] = s
	}
	return s
}

func (r *fakeRouter) fence(ctx context.Context, op, db string, epoch uint64, mode FenceMode, hold bool) error {
	r.mu.Lock()
	block := r.pauseCh
	s := r.st(db)
	if epoch < s.Seen || (!hold && s.ExposedAt != 0 && epoch <= s.ExposedAt) {
		r.mu.Unlock()
		return &StaleEpochError{DB: db, Op: op, Epoch: epoch, Newest: s.Seen}
	}
	r.mu.Unlock()
	if mode == FencePlanned && block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Seen = max(s.Seen, epoch)
	s.Fenced, s.FencedAt, s.ExposedAt = true, epoch, 0
	r.j.add("%s %s %d %s", op, db, epoch, mode)
	return nil
}

func (r *fakeRouter) Fence(ctx context.Context, db string, epoch uint64, mode FenceMode) error {
	return r.fence(ctx, "fence", db, epoch, mode, false)
}

func (r *fakeRouter) Hold(ctx context.Context, db string, epoch uint64, mode FenceMode) error {
	return r.fence(ctx, "hold", db, epoch, mode, true)
}

func (r *fakeRouter) Expose(_ context.Context, db string, epoch uint64, route Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st(db)
	if epoch < s.Seen {
		return &StaleEpochError{DB: db, Op: "expose", Epoch: epoch, Newest: s.Seen}
	}
	if s.ExposedAt != 0 && s.ExposedAt < epoch {
		return fmt.Errorf("fake: expose %s at %d: exposed at %d: %w", db, epoch, s.ExposedAt, ErrNotFenced)
	}
	s.Seen, s.Fenced, s.ExposedAt, s.Route = epoch, false, epoch, route
	r.j.add("expose %s %d %s:%d", db, epoch, route.Host, route.Port)
	return nil
}

// Stage journals the staging of a fenced database (the real Router's
// precondition); it changes no epoch.
func (r *fakeRouter) Stage(_ context.Context, db string, epoch uint64, route Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.st(db); s.Fenced && s.FencedAt < epoch {
		r.j.add("stage %s %d %s:%d", db, epoch, route.Host, route.Port)
	}
	return nil
}

func (r *fakeRouter) Status(db string) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.dbs[db]
	if !ok {
		return Status{}, false
	}
	return *s, true
}

func (r *fakeRouter) Tune(context.Context, TuneOptions) error {
	r.mu.Lock()
	r.tuned++
	r.mu.Unlock()
	return nil
}

// agentHarness runs an Agent against fake quorums and a fake router.
type agentHarness struct {
	t      *testing.T
	j      *journal
	router *fakeRouter
	qs     map[string]*fakeQuorum // endpoint → quorum
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

func newAgentHarness(t *testing.T) *agentHarness {
	j := &journal{}
	return &agentHarness{t: t, j: j, router: newFakeRouter(j), qs: map[string]*fakeQuorum{}}
}

// quorum adds a cluster with endpoints served by one fake quorum.
func (h *agentHarness) quorum(name string, eps ...string) *fakeQuorum {
	q := newFakeQuorum(h.t, name, h.j)
	for _, ep := range eps {
		h.qs[ep] = q
	}
	return q
}

func (h *agentHarness) start(lease time.Duration, clusters ...ClusterSpec) {
	t := h.t
	a, err := NewAgent(AgentOptions{
		AgentID: "agent1", ContactLease: lease, Clusters: clusters, Router: h.router,
		Dial: func(addr string) (pb.AdminClient, error) {
			q, ok := h.qs[addr]
			if !ok {
				return nil, fmt.Errorf("no fake member at %s", addr)
			}
			return q.client(addr), nil
		},
		Logger: testLogger(), PauseTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.agent, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop within 10s")
		}
		if t.Failed() {
			t.Logf("journal:\n%s", strings.Join(h.j.snapshot(), "\n"))
		}
	})
}

func (h *agentHarness) status(cluster string) ClusterStatus {
	for _, s := range h.agent.Status() {
		if s.Name == cluster {
			return s
		}
	}
	h.t.Fatalf("no cluster %q", cluster)
	return ClusterStatus{}
}

// waitJournal waits for a journal line with prefix.
func (h *agentHarness) waitJournal(prefix string) int {
	h.t.Helper()
	waitFor(h.t, 5*time.Second, fmt.Sprintf("journal line %q", prefix), func() bool { return h.j.index(prefix) >= 0 })
	return h.j.index(prefix)
}
