package httpapi

import (
	"context"
	"slices"
	"strings"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
)

// Node is what the endpoint reads from a pgquorum node. *server.Server
// implements it; tests use a fake.
type Node interface {
	NodeID() string
	Options() server.Options
	Status() *pb.NodeStatus
	State(ctx context.Context, linearizable bool) (*pb.ClusterState, error)
	LocalHealth() *pb.PostgresHealth
	LeaseAge() time.Duration
}

var _ Node = (*server.Server)(nil)

// ProbeFunc asks the member at a gRPC address for its PostgreSQL health.
type ProbeFunc func(ctx context.Context, grpcAddr string) (*pb.PostgresHealth, error)

// Roles as the endpoint reports them for this node.
const (
	rolePrimary = "primary"
	roleReplica = "replica"
	roleWitness = "witness"
)

// facts is one consistent look at the node, taken per request.
type facts struct {
	id      string
	cluster string
	version string
	witness bool
	tags    *pb.Tags
	pg      *pb.PostgresHealth // nil on witnesses and before the first probe
	st      *pb.ClusterState
	ns      *pb.NodeStatus
	// leaseAge is how long ago this node applied the primary's last
	// renewal; leaseLimit is when the primary fences itself (ttl minus
	// the safety margin), 0 when unknown.
	leaseAge   time.Duration
	leaseLimit time.Duration
	// maxLagOnFailover is the dynamic config's maximum_lag_on_failover.
	maxLagOnFailover int64
}

func gather(ctx context.Context, n Node) facts {
	o := n.Options()
	st, err := n.State(ctx, false)
	if err != nil || st == nil {
		st = &pb.ClusterState{}
	}
	limit := o.Timing.TTL - o.Timing.SafetyMargin
	if limit <= 0 {
		limit = o.Timing.TTL
	}
	tags := o.Tags
	if tags == nil {
		tags = &pb.Tags{}
	}
	f := facts{
		id: n.NodeID(), cluster: o.ClusterName, version: o.Version,
		witness: o.Role == pb.MemberRole_MEMBER_ROLE_WITNESS,
		tags:    tags, st: st, ns: n.Status(),
		leaseAge: n.LeaseAge(), leaseLimit: limit,
		maxLagOnFailover: st.GetConfig().GetMaximumLagOnFailoverBytes(),
	}
	if !f.witness {
		f.pg = n.LocalHealth()
	}
	return f
}

// running reports that PostgreSQL answers.
func (f facts) running() bool { return f.pg.GetState() == pb.PgState_PG_STATE_RUNNING }

// assigned reports that the committed state names this node primary of
// the current epoch, and it has not given its lease back.
func (f facts) assigned() bool {
	p := f.st.GetPrimary()
	return p.GetEpoch() > 0 && p.GetMemberId() == f.id && !p.GetReleased()
}

// fenced reports that this node's agent fenced PostgreSQL, or that it is
// the assigned primary and its lease is (about to be) out as seen from
// here: the lease keeper fences at that point.
func (f facts) fenced() bool {
	if f.pg.GetState() == pb.PgState_PG_STATE_FENCED {
		return true
	}
	return f.assigned() && f.leaseLimit > 0 && f.leaseAge >= f.leaseLimit
}

// primary is the /primary rule: the committed primary of the current
// epoch, converged to it, running, out of recovery and not fenced.
func (f facts) primary() (bool, string) {
	switch {
	case f.witness:
		return false, "this node is a witness"
	case !f.assigned():
		return false, "this node is not the primary of epoch " + uitoa(f.st.GetPrimary().GetEpoch())
	case f.fenced():
		return false, "the primary is fenced (its lease ran out)"
	case !f.running():
		return false, "postgres is " + pgState(f.pg)
	case f.pg.GetInRecovery():
		return false, "postgres is still in recovery"
	case f.pg.GetAppliedEpoch() < f.st.GetPrimary().GetEpoch():
		return false, "the agent has not converged to epoch " + uitoa(f.st.GetPrimary().GetEpoch()) + " yet"
	}
	return true, ""
}

// replica is the part of the /replica rule that needs no query: a running
// standby that is not the assigned primary.
func (f facts) replica() (bool, string) {
	switch {
	case f.witness:
		return false, "this node is a witness"
	case !f.running():
		return false, "postgres is " + pgState(f.pg)
	case f.assigned():
		return false, "this node is the primary"
	case !f.pg.GetInRecovery():
		return false, "postgres is not in recovery"
	}
	return true, ""
}

// syncStandby reports that this node is a recorded synchronous standby of
// the current epoch.
func (f facts) syncStandby() bool {
	return f.syncValid() && slices.Contains(f.st.GetSync().GetMembers(), f.id)
}

// replicationState approximates Patroni's replication_state: "streaming"
// once the standby received WAL from an upstream since it started.
func (f facts) replicationState() string {
	if !f.running() || !f.pg.GetInRecovery() {
		return ""
	}
	if f.pg.GetReceiveLsn() > 0 {
		return "streaming"
	}
	return "in archive recovery"
}

// role is this node's role in the committed state.
func (f facts) role() string {
	switch {
	case f.witness:
		return roleWitness
	case f.assigned():
		return rolePrimary
	}
	return roleReplica
}

// pgState names a PostgreSQL state the way Patroni does where it has a
// name for it.
func pgState(h *pb.PostgresHealth) string {
	switch h.GetState() {
	case pb.PgState_PG_STATE_INITIALIZING:
		return "initializing new cluster"
	case pb.PgState_PG_STATE_CLONING:
		return "creating replica"
	case pb.PgState_PG_STATE_FAILED:
		return "start failed"
	}
	return strings.ToLower(strings.TrimPrefix(h.GetState().String(), "PG_STATE_"))
}
