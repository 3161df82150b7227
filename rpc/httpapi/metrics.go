package httpapi

import (
	"context"
	"strings"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads the node on every scrape. Its descriptors belong to
// it: nothing is registered globally.
type collector struct {
	h *Handler

	info, role, epoch, leaseAge, fenced, paused, syncStandby            *prometheus.Desc
	raftTerm, raftState, raftCommit, raftApplied, raftLast, leaderKnown *prometheus.Desc
	pgUp, pgState, recovery, timeline, wal, receive, replay, pending    *prometheus.Desc
	lag, replicaLag, members, healthy, failovers, changes               *prometheus.Desc
}

func newCollector(h *Handler) *collector {
	return &collector{
		h: h,
		info: prometheus.NewDesc("pgquorum_node_info",
			"Constant 1, labelled with the node's identity.", []string{"node_id", "cluster", "version"}, nil),
		role: prometheus.NewDesc("pgquorum_role",
			"1 for this node's role in the committed state (primary, replica or witness), 0 for the others.", []string{"role"}, nil),
		epoch: prometheus.NewDesc("pgquorum_epoch",
			"Epoch (primary generation) of the committed primary assignment.", nil, nil),
		leaseAge: prometheus.NewDesc("pgquorum_lease_age_seconds",
			"How long ago this node applied the primary's last lease renewal.", nil, nil),
		fenced: prometheus.NewDesc("pgquorum_fenced",
			"1 if this node fenced its PostgreSQL or is a primary whose lease ran out.", nil, nil),
		paused: prometheus.NewDesc("pgquorum_paused",
			"1 if the cluster is paused (no automatic failover).", nil, nil),
		raftTerm: prometheus.NewDesc("pgquorum_raft_term",
			"Current Raft term.", nil, nil),
		raftState: prometheus.NewDesc("pgquorum_raft_state",
			"1 for this node's Raft state, 0 for the others.", []string{"state"}, nil),
		raftCommit: prometheus.NewDesc("pgquorum_raft_commit_index",
			"Raft commit index.", nil, nil),
		raftApplied: prometheus.NewDesc("pgquorum_raft_applied_index",
			"Raft index applied to the state machine.", nil, nil),
		raftLast: prometheus.NewDesc("pgquorum_raft_last_log_index",
			"Last index in the Raft log.", nil, nil),
		leaderKnown: prometheus.NewDesc("pgquorum_raft_leader_known",
			"1 if this node knows a Raft leader.", nil, nil),
		pgUp: prometheus.NewDesc("pgquorum_postgres_up",
			"1 if PostgreSQL is running (absent on witnesses).", nil, nil),
		pgState: prometheus.NewDesc("pgquorum_postgres_state",
			"1 for PostgreSQL's state as the agent sees it, 0 for the others.", []string{"state"}, nil),
		recovery: prometheus.NewDesc("pgquorum_postgres_in_recovery",
			"1 if PostgreSQL is a standby (in recovery).", nil, nil),
		timeline: prometheus.NewDesc("pgquorum_postgres_timeline",
			"PostgreSQL timeline.", nil, nil),
		wal: prometheus.NewDesc("pgquorum_postgres_wal_lsn",
			"WAL position in bytes: the primary's current one, a standby's received or replayed one, whichever is further.", nil, nil),
		receive: prometheus.NewDesc("pgquorum_postgres_receive_lsn",
			"A standby's last received WAL position in bytes.", nil, nil),
		replay: prometheus.NewDesc("pgquorum_postgres_replay_lsn",
			"A standby's last replayed WAL position in bytes.", nil, nil),
		pending: prometheus.NewDesc("pgquorum_postgres_pending_restart",
			"1 if a changed parameter waits for a restart.", nil, nil),
		lag: prometheus.NewDesc("pgquorum_replication_lag_bytes",
			"How far this standby's replayed WAL is behind the primary's last known position.", nil, nil),
		replicaLag: prometheus.NewDesc("pgquorum_replica_lag_bytes",
			"On the primary: how far each standby's replayed WAL is behind (pg_stat_replication).", []string{"application_name", "sync_state"}, nil),
		syncStandby: prometheus.NewDesc("pgquorum_sync_standby",
			"1 if this node is a recorded synchronous standby of the current epoch.", nil, nil),
		members: prometheus.NewDesc("pgquorum_cluster_members",
			"Members in the committed state, by role.", []string{"role"}, nil),
		healthy: prometheus.NewDesc("pgquorum_cluster_members_healthy",
			"Members that reported to the leader within the ttl (exported by the Raft leader only).", nil, nil),
		failovers: prometheus.NewDesc("pgquorum_failovers_total",
			"Failovers (automatic and manual) in the retained history.", nil, nil),
		changes: prometheus.NewDesc("pgquorum_primary_changes_total",
			"Primary assignments in the retained history.", nil, nil),
	}
}

var raftStates = []string{"Follower", "Candidate", "Leader", "Shutdown"}

var pgStates = []pb.PgState{
	pb.PgState_PG_STATE_UNKNOWN, pb.PgState_PG_STATE_STOPPED, pb.PgState_PG_STATE_STARTING,
	pb.PgState_PG_STATE_RUNNING, pb.PgState_PG_STATE_CRASHED, pb.PgState_PG_STATE_FENCED,
	pb.PgState_PG_STATE_INITIALIZING, pb.PgState_PG_STATE_CLONING, pb.PgState_PG_STATE_FAILED,
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.role, c.epoch, c.leaseAge, c.fenced, c.paused,
		c.raftTerm, c.raftState, c.raftCommit, c.raftApplied, c.raftLast, c.leaderKnown,
		c.pgUp, c.pgState, c.recovery, c.timeline, c.wal, c.receive, c.replay, c.pending,
		c.lag, c.replicaLag, c.syncStandby, c.members, c.healthy, c.failovers, c.changes} {
		ch <- d
	}
}

// Collect reads the node and sends the metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.h.wal.timeout)
	defer cancel()
	f := gather(ctx, c.h.node)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	st, ns, pg := f.st, f.ns, f.pg

	gauge(c.info, 1, f.id, f.cluster, f.version)
	for _, r := range []string{rolePrimary, roleReplica, roleWitness} {
		gauge(c.role, b2f(f.role() == r), r)
	}
	gauge(c.epoch, float64(st.GetPrimary().GetEpoch()))
	gauge(c.leaseAge, f.leaseAge.Seconds())
	gauge(c.fenced, b2f(f.fenced()))
	gauge(c.paused, b2f(st.GetPaused()))
	gauge(c.syncStandby, b2f(f.syncStandby()))

	gauge(c.raftTerm, float64(ns.GetTerm()))
	for _, s := range raftStates {
		gauge(c.raftState, b2f(ns.GetRaftState() == s), strings.ToLower(s))
	}
	gauge(c.raftCommit, float64(ns.GetCommitIndex()))
	gauge(c.raftApplied, float64(ns.GetAppliedIndex()))
	gauge(c.raftLast, float64(ns.GetLastLogIndex()))
	gauge(c.leaderKnown, b2f(ns.GetLeaderId() != ""))

	if !f.witness {
		gauge(c.pgUp, b2f(f.running()))
		for _, s := range pgStates {
			gauge(c.pgState, b2f(pg.GetState() == s), strings.ToLower(strings.TrimPrefix(s.String(), "PG_STATE_")))
		}
		gauge(c.pending, b2f(pg.GetPendingRestart()))
	}
	if f.running() {
		gauge(c.recovery, b2f(pg.GetInRecovery()))
		gauge(c.timeline, float64(pg.GetTimeline()))
		gauge(c.wal, float64(pg.GetWalLsn()))
		if pg.GetInRecovery() {
			gauge(c.receive, float64(pg.GetReceiveLsn()))
			gauge(c.replay, float64(pg.GetReplayLsn()))
			if !f.assigned() {
				if p, ok := c.h.wal.get(ctx, st, c.h.now()); ok {
					gauge(c.lag, float64(lagBytes(p, pg.GetReplayLsn())))
				}
			}
		} else {
			for _, r := range pg.GetReplicas() {
				gauge(c.replicaLag, float64(lagBytes(pg.GetWalLsn(), r.GetReplayLsn())), r.GetApplicationName(), r.GetSyncState())
			}
		}
	}

	c.collectMembers(f, gauge)
	var failovers, changes float64
	for _, e := range st.GetHistory() {
		changes++
		if r := e.GetReason(); strings.HasPrefix(r, "failover") || strings.HasPrefix(r, "manual failover") {
			failovers++
		}
	}
	counter(c.failovers, failovers)
	counter(c.changes, changes)
}

// collectMembers counts the members by role and, on the Raft leader, those that
// reported within the ttl.
func (c *collector) collectMembers(f facts, gauge func(*prometheus.Desc, float64, ...string)) {
	var pgCount, witnesses float64
	for _, m := range f.st.GetMembers() {
		if m.GetRole() == pb.MemberRole_MEMBER_ROLE_WITNESS {
			witnesses++
		} else {
			pgCount++
		}
	}
	gauge(c.members, pgCount, "postgres")
	gauge(c.members, witnesses, roleWitness)
	if f.ns.GetRaftState() != "Leader" {
		return
	}
	ttl := c.h.node.Options().Timing.TTL
	contact := map[string]int64{}
	for _, p := range f.ns.GetPeers() {
		contact[p.GetId()] = p.GetLastContactMs()
	}
	var healthy float64
	for _, m := range f.st.GetMembers() {
		ms, ok := contact[m.GetId()]
		if m.GetId() == f.id || (ok && ms >= 0 && time.Duration(ms)*time.Millisecond < ttl) {
			healthy++
		}
	}
	gauge(c.healthy, healthy)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
