package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Operator actions on members' PostgreSQL: restart, reload, reinit, flush.
//
// Why a node RPC and not a Raft command: a switchover changes who is
// primary, so it is committed (every node must agree on it, and it must
// survive a leader change half-way). A restart, reload or reinit changes
// nothing the cluster agrees on: the primary, its epoch and lease stay as
// they are, and the action concerns one member's local PostgreSQL only.
// So the leader validates the request against the committed state, orders
// it (replicas first, the primary last), and hands each step to the
// target member's own actuator with LocalAction, the way the decider
// probes members before a failover. The member carries it out between two
// convergence rounds and re-checks the epoch, so a request validated under
// an older primary is refused. Committing it instead would put transient
// operator requests into every snapshot and make the operator poll for an
// outcome; the RPC answers with the member's own result or error. The
// price: a scheduled restart lives in the leader's memory and is dropped
// (and logged) when that node stops leading; docs/operations.md says so.

// restartHealthyTimeout bounds the wait for a restarted member to be
// healthy again (the caller's deadline may end it sooner).
const restartHealthyTimeout = 5 * time.Minute

// restartPlans is the leader's memory of operator restarts: at most one
// running and one scheduled.
type restartPlans struct {
	mu        sync.Mutex
	running   bool
	scheduled *scheduledRestart
	stopped   bool
	wg        sync.WaitGroup
}

type scheduledRestart struct {
	req    *pb.RestartRequest
	cancel context.CancelFunc
}

// stop cancels a scheduled restart and waits for its goroutine (the node
// is stopping).
func (p *restartPlans) stop() {
	p.mu.Lock()
	p.stopped = true
	if p.scheduled != nil {
		p.scheduled.cancel()
		p.scheduled = nil
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// begin marks a rolling restart as running; false if one already runs.
func (p *restartPlans) begin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return false
	}
	p.running = true
	return true
}

func (p *restartPlans) end() {
	p.mu.Lock()
	p.running = false
	p.mu.Unlock()
}

// scheduledRequest returns the scheduled restart, if any.
func (p *restartPlans) scheduledRequest() *pb.RestartRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.scheduled == nil {
		return nil
	}
	return proto.Clone(p.scheduled.req).(*pb.RestartRequest)
}

// cancelScheduled drops the scheduled restart and describes it; "" when
// none was scheduled.
func (p *restartPlans) cancelScheduled() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	sr := p.scheduled
	if sr == nil {
		return ""
	}
	sr.cancel()
	p.scheduled = nil
	return "scheduled restart of " + describeTargets(sr.req.Members) + " at " + formatUnixMs(sr.req.ScheduledAtUnixMs) + " cancelled"
}

func describeTargets(ids []string) string {
	if len(ids) == 0 {
		return "every member"
	}
	return strings.Join(ids, ", ")
}

func formatUnixMs(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// Restart restarts members' PostgreSQL one at a time, replicas first and
// the primary last, each waiting until the member is healthy again. With a
// time in the future it only schedules it (in the leader's memory).
func (s *Server) Restart(ctx context.Context, req *pb.RestartRequest) (*pb.ActionResponse, error) {
	if _, ok := pb.RestartRole_name[int32(req.GetRole())]; !ok {
		return nil, fmt.Errorf("%w: role: %d is not any, primary or replica", ErrInvalid, req.GetRole())
	}
	if req.GetScheduledAtUnixMs() < 0 {
		return nil, fmt.Errorf("%w: scheduled_at_unix_ms: %d is negative", ErrInvalid, req.ScheduledAtUnixMs)
	}
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	st := s.fsm.State()
	if err := checkPostgresMembers(st, req.Members); err != nil {
		return nil, err
	}
	if err := s.checkRestartable(st); err != nil {
		return nil, err
	}
	if at := req.GetScheduledAtUnixMs(); at > time.Now().UnixMilli() {
		return s.scheduleRestart(req)
	}
	if !s.restarts.begin() {
		return nil, fmt.Errorf("%w: a rolling restart is already running", ErrPrecondition)
	}
	defer s.restarts.end()
	return s.rollingRestart(ctx, req)
}

// checkPostgresMembers refuses unknown members and witnesses.
func checkPostgresMembers(st *pb.ClusterState, ids []string) error {
	for _, id := range ids {
		if id == "" {
			return fmt.Errorf("%w: members: an empty member ID", ErrInvalid)
		}
		m := fsm.FindMember(st, id)
		if m == nil {
			return fmt.Errorf("%w: members: member %q", ErrNotFound, id)
		}
		if m.Role != pb.MemberRole_MEMBER_ROLE_POSTGRES {
			return fmt.Errorf("%w: members: %s is a witness and runs no PostgreSQL", ErrInvalid, id)
		}
	}
	return nil
}

// checkRestartable refuses a restart while the primary is changing: the
// replicas-first order and the in-place restart of the primary both need
// a primary that holds its lease and is not handing over.
func (s *Server) checkRestartable(st *pb.ClusterState) error {
	p := st.Primary
	switch {
	case p.GetMemberId() == "":
		return fmt.Errorf("%w: there is no primary yet", ErrPrecondition)
	case st.Switchover != nil:
		return fmt.Errorf("%w: a switchover from %s is pending; wait for it or cancel it (ctl flush)", ErrPrecondition, st.Switchover.From)
	}
	if v := s.currentView(); v.leaseExpired() {
		return fmt.Errorf("%w: the primary %s has no valid lease (a failover is due)", ErrPrecondition, p.MemberId)
	}
	return nil
}

// scheduleRestart keeps req until its time, then runs it if this node
// still leads.
func (s *Server) scheduleRestart(req *pb.RestartRequest) (*pb.ActionResponse, error) {
	p := &s.restarts
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, ErrShutdown
	}
	if sr := p.scheduled; sr != nil {
		return nil, fmt.Errorf("%w: a restart of %s is already scheduled at %s; cancel it first (ctl flush)",
			ErrPrecondition, describeTargets(sr.req.Members), formatUnixMs(sr.req.ScheduledAtUnixMs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	sr := &scheduledRestart{req: req, cancel: cancel}
	p.scheduled = sr
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		t := time.NewTimer(time.Until(time.UnixMilli(req.ScheduledAtUnixMs)))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		current := p.scheduled == sr
		if current {
			p.scheduled = nil
		}
		p.mu.Unlock()
		if !current {
			return
		}
		if !s.IsLeader() {
			s.log.Warn("scheduled restart dropped: this node no longer leads", "members", req.Members)
			return
		}
		if err := s.checkRestartable(s.fsm.State()); err != nil {
			s.log.Warn("scheduled restart not started", "err", err)
			return
		}
		if !p.begin() {
			s.log.Warn("scheduled restart not started: a rolling restart is already running")
			return
		}
		defer p.end()
		resp, err := s.rollingRestart(ctx, req)
		if err != nil {
			s.log.Warn("scheduled restart failed", "err", err)
			return
		}
		s.log.Info("scheduled restart done", "result", resp.Message)
	}()
	msg := "restart of " + describeTargets(req.Members) + " scheduled at " + formatUnixMs(req.ScheduledAtUnixMs)
	s.log.Info(msg)
	return &pb.ActionResponse{Message: msg}, nil
}

// restartOrder lists the members req selects, replicas (by ID) first and
// the primary last.
func restartOrder(st *pb.ClusterState, req *pb.RestartRequest) []string {
	ids := req.Members
	if len(ids) == 0 {
		ids = postgresMembers(st)
	}
	primary := st.Primary.GetMemberId()
	var replicas []string
	hasPrimary := false
	for _, id := range ids {
		switch {
		case id == primary:
			hasPrimary = req.Role != pb.RestartRole_RESTART_ROLE_REPLICA
		case req.Role != pb.RestartRole_RESTART_ROLE_PRIMARY && !slices.Contains(replicas, id):
			replicas = append(replicas, id)
		}
	}
	slices.Sort(replicas)
	if hasPrimary {
		replicas = append(replicas, primary)
	}
	return replicas
}

// rollingRestart restarts the selected members in order. Without force it
// stops at the first member that is not healthy before its turn, fails,
// or does not come back healthy: the rest are left alone.
func (s *Server) rollingRestart(ctx context.Context, req *pb.RestartRequest) (*pb.ActionResponse, error) {
	st := s.fsm.State()
	epoch := st.Primary.GetEpoch()
	order := restartOrder(st, req)
	if len(order) == 0 {
		return &pb.ActionResponse{Message: "no member matches"}, nil
	}
	var results []*pb.MemberResult
	stopped := ""
	restarted := 0
	for _, id := range order {
		if stopped != "" {
			results = append(results, &pb.MemberResult{Member: id, Skipped: "not started: " + stopped})
			continue
		}
		res := s.restartOne(ctx, id, epoch, req)
		results = append(results, res)
		if res.Done {
			restarted++
		}
		if res.Error != "" && (!req.Force || ctx.Err() != nil || s.fsm.State().Primary.GetEpoch() != epoch) {
			stopped = fmt.Sprintf("the restart stopped at %s", id)
		}
	}
	msg := fmt.Sprintf("restarted %d of %d members", restarted, len(order))
	if stopped != "" {
		msg += "; " + stopped
	}
	s.log.Info("rolling restart", "result", msg, "epoch", epoch)
	return &pb.ActionResponse{Results: results, Message: msg}, nil
}

// restartOne restarts one member and waits until it is healthy again.
func (s *Server) restartOne(ctx context.Context, id string, epoch uint64, req *pb.RestartRequest) *pb.MemberResult {
	res := &pb.MemberResult{Member: id}
	if e := s.fsm.State().Primary.GetEpoch(); e != epoch {
		res.Error = fmt.Sprintf("the primary changed during the rolling restart (epoch %d, began at %d)", e, epoch)
		return res
	}
	s.probeMembers(ctx, []string{id})
	v := s.currentView()
	h := v.pg(id)
	if req.PendingOnly && h != nil && v.alive(id) && !h.PendingRestart {
		res.Skipped = "no pending restart"
		return res
	}
	if !req.Force && (!v.alive(id) || h.GetState() != pb.PgState_PG_STATE_RUNNING) {
		res.Error = fmt.Sprintf("not healthy before its turn (%s); not restarted (--force restarts it anyway)", stateWord(v, id))
		return res
	}
	began := time.Now()
	out, err := s.callMember(ctx, id, &pb.LocalActionRequest{Action: pb.LocalActionKind_LOCAL_ACTION_RESTART, Epoch: epoch, PendingOnly: req.PendingOnly})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if out.Skipped != "" {
		res.Skipped = out.Skipped
		return res
	}
	if err := s.waitHealthy(ctx, id, epoch); err != nil {
		res.Error = err.Error()
		return res
	}
	res.Done, res.TookMs = true, time.Since(began).Milliseconds()
	return res
}

func stateWord(v view, id string) string {
	h := v.pg(id)
	switch {
	case !v.alive(id):
		return "agent not reporting"
	case h == nil:
		return "no health reported"
	}
	return strings.ToLower(strings.TrimPrefix(h.State.String(), "PG_STATE_"))
}

// waitHealthy waits until member id runs again in its role at epoch: the
// primary out of recovery, a replica in recovery and streaming from the
// primary.
func (s *Server) waitHealthy(ctx context.Context, id string, epoch uint64) error {
	ctx, cancel := context.WithTimeout(ctx, restartHealthyTimeout)
	defer cancel()
	every := max(s.opts.Timing.LoopWait, 50*time.Millisecond)
	last := ""
	for {
		st := s.fsm.State()
		primary := st.Primary.GetMemberId()
		probe := []string{id}
		if id != primary {
			probe = append(probe, primary)
		}
		s.probeMembers(ctx, probe)
		v := s.currentView()
		h := v.pg(id)
		switch {
		case st.Primary.GetEpoch() != epoch:
			return fmt.Errorf("the primary changed while %s restarted (epoch %d, began at %d)", id, st.Primary.GetEpoch(), epoch)
		case !v.alive(id) || h.GetState() != pb.PgState_PG_STATE_RUNNING:
			last = stateWord(v, id)
		case h.AppliedEpoch != epoch:
			last = fmt.Sprintf("converged to epoch %d, not %d", h.AppliedEpoch, epoch)
		case id == primary && h.InRecovery:
			last = "in recovery"
		case id == primary:
			return nil
		case !h.InRecovery:
			last = "not in recovery"
		case !streamingTo(v.pg(primary), id):
			last = "not streaming from " + primary
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not come back healthy (%s): %w", id, last, ctx.Err())
		case <-time.After(every):
		}
	}
}

// streamingTo reports whether the primary's health lists id streaming.
func streamingTo(primary *pb.PostgresHealth, id string) bool {
	for _, r := range primary.GetReplicas() {
		if r.ApplicationName == id && r.State == "streaming" {
			return true
		}
	}
	return false
}

// callMember sends a local action to member id (or runs it here).
func (s *Server) callMember(ctx context.Context, id string, req *pb.LocalActionRequest) (*pb.MemberResult, error) {
	if id == s.opts.NodeID {
		return s.LocalAction(ctx, req)
	}
	m := fsm.FindMember(s.fsm.State(), id)
	if m == nil {
		return nil, fmt.Errorf("%w: member %q", ErrNotFound, id)
	}
	c, err := s.opts.Dial(m.GrpcAddr)
	if err != nil {
		return nil, fmt.Errorf("reach %s at %s: %w", id, m.GrpcAddr, err)
	}
	res, err := c.LocalAction(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, fromStatus(err))
	}
	return res, nil
}

// Reload makes the PostgreSQL of members (default: all) re-read their
// configuration. Any node serves it; each member reloads on its own.
func (s *Server) Reload(ctx context.Context, req *pb.ReloadRequest) (*pb.ActionResponse, error) {
	st := s.fsm.State()
	if err := checkPostgresMembers(st, req.Members); err != nil {
		return nil, err
	}
	ids := req.Members
	if len(ids) == 0 {
		ids = postgresMembers(st)
	}
	results := make([]*pb.MemberResult, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.callMember(ctx, id, &pb.LocalActionRequest{Action: pb.LocalActionKind_LOCAL_ACTION_RELOAD})
			if err != nil {
				res = &pb.MemberResult{Member: id, Error: err.Error()}
			}
			results[i] = res
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		if r.Done {
			ok++
		}
	}
	return &pb.ActionResponse{Results: results, Message: fmt.Sprintf("reloaded %d of %d members", ok, len(ids))}, nil
}

// Reinit clones a replica's data directory again from the primary. The
// primary is refused; so is a recorded synchronous standby unless forced
// (losing it may degrade synchronous mode or make writes wait).
func (s *Server) Reinit(ctx context.Context, req *pb.ReinitRequest) (*pb.ActionResponse, error) {
	id := req.GetMember()
	if id == "" {
		return nil, fmt.Errorf("%w: member: required", ErrInvalid)
	}
	st := s.fsm.State()
	if err := checkPostgresMembers(st, []string{id}); err != nil {
		return nil, err
	}
	p := st.Primary
	switch {
	case p.GetMemberId() == "":
		return nil, fmt.Errorf("%w: there is no primary to clone from", ErrPrecondition)
	case id == p.MemberId:
		return nil, fmt.Errorf("%w: member: %s is the primary (epoch %d); switch over first", ErrPrecondition, id, p.Epoch)
	case !req.Force && slices.Contains(st.Sync.GetMembers(), id):
		return nil, fmt.Errorf("%w: member: %s is a recorded synchronous standby; force to reinit it anyway", ErrPrecondition, id)
	}
	res, err := s.callMember(ctx, id, &pb.LocalActionRequest{Action: pb.LocalActionKind_LOCAL_ACTION_REINIT, Epoch: p.Epoch})
	if err != nil {
		return nil, err
	}
	return &pb.ActionResponse{Results: []*pb.MemberResult{res}, Message: fmt.Sprintf("%s cloned again from %s", id, p.MemberId)}, nil
}

// Flush cancels what is scheduled: the restart this leader holds and a
// planned switchover that has not started.
func (s *Server) Flush(ctx context.Context, _ *pb.FlushRequest) (*pb.ActionResponse, error) {
	if !s.IsLeader() {
		return nil, s.notLeader()
	}
	var done []string
	if msg := s.restarts.cancelScheduled(); msg != "" {
		done = append(done, msg)
	}
	if sw := s.fsm.State().Switchover; sw != nil {
		if sw.SteppingDown {
			done = append(done, fmt.Sprintf("the switchover from %s already started and cannot be cancelled", sw.From))
		} else {
			if _, err := s.propose(ctx, &pb.SetSwitchover{}); err != nil {
				return nil, fmt.Errorf("cancel the switchover from %s: %w", sw.From, err)
			}
			done = append(done, fmt.Sprintf("switchover from %s cancelled", sw.From))
		}
	}
	if len(done) == 0 {
		return &pb.ActionResponse{Message: "nothing was scheduled"}, nil
	}
	s.log.Info("flushed", "what", done)
	return &pb.ActionResponse{Message: strings.Join(done, "; ")}, nil
}
