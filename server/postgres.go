package server

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// Postgres is the local PostgreSQL as the actuator drives it. *pgnode.Node
// implements it; tests use a fake. Every method is idempotent.
type Postgres interface {
	Inspect(ctx context.Context) (pgnode.DataDirInfo, error)
	Bootstrap(ctx context.Context) (uint64, error)
	Start(ctx context.Context, opts pgnode.StartOptions) error
	Stop(ctx context.Context, mode pgnode.StopMode) error
	Promote(ctx context.Context) error
	// PrepareStop readies a running primary for a fast shutdown soon
	// (see pgnode.Node.PrepareStop).
	PrepareStop(ctx context.Context) error
	Rewind(ctx context.Context, up pgnode.Upstream) error
	// Diverged reports a running standby that replayed past the point
	// where up's timeline forked off its own.
	Diverged(ctx context.Context, up pgnode.Upstream) (bool, error)
	CloneFrom(ctx context.Context, up pgnode.Upstream) error
	Reinit(ctx context.Context, up pgnode.Upstream) error
	Probe(ctx context.Context) (pgnode.Status, error)
	// WriteProbe commits a tiny write on a running primary, bounded by
	// timeout, testing its own disk (not its standbys).
	WriteProbe(ctx context.Context, timeout time.Duration) error
	EnsureSlots(ctx context.Context, names []string) error
	SetSynchronousStandbys(ctx context.Context, names []string, count int) error
	SetParameters(ctx context.Context, params map[string]string) ([]string, error)
	// UseParameters sets the dynamic parameters the next start (or
	// rewrite of the managed configuration) uses, without touching the
	// server; SetParameters applies them to a running one.
	UseParameters(params map[string]string) error
	// EnsureRoles creates (or updates) the replication and rewind roles
	// on a running primary.
	EnsureRoles(ctx context.Context) error
	Process() pgnode.ProcessInfo
}

// SlotPrefix marks the replication slots pgquorum keeps on the primary,
// one per member (pgnode's default prefix).
const SlotPrefix = "pgq_"

// upstreamOf returns how to follow member m as a standby.
func upstreamOf(m *pb.Member, self string) (pgnode.Upstream, error) {
	host, port, err := net.SplitHostPort(m.GetPgAddr())
	if err != nil {
		return pgnode.Upstream{}, fmt.Errorf("member %s has no usable pg_addr %q: %w", m.GetId(), m.GetPgAddr(), err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return pgnode.Upstream{}, fmt.Errorf("member %s pg_addr %q: %w", m.GetId(), m.GetPgAddr(), err)
	}
	return pgnode.Upstream{Host: host, Port: p, SlotName: pgnode.SlotName(SlotPrefix, self)}, nil
}

// healthOf turns what pgnode saw into the health a node reports.
func healthOf(info pgnode.DataDirInfo, st pgnode.Status, proc pgnode.ProcessInfo) *pb.PostgresHealth {
	h := &pb.PostgresHealth{
		SystemIdentifier:     info.SystemIdentifier,
		Timeline:             info.Timeline,
		PendingRestartParams: st.PendingRestart,
		PendingRestart:       len(st.PendingRestart) > 0,
	}
	switch {
	case !info.Initialized:
		h.DataDir = pb.DataDirKind_DATA_DIR_EMPTY
	case info.Standby:
		h.DataDir = pb.DataDirKind_DATA_DIR_STANDBY
	default:
		h.DataDir = pb.DataDirKind_DATA_DIR_PRIMARY
	}
	switch {
	case st.Up:
		h.State = pb.PgState_PG_STATE_RUNNING
	case proc.State == pgnode.ProcessCrashed:
		h.State = pb.PgState_PG_STATE_CRASHED
	case info.Running:
		h.State = pb.PgState_PG_STATE_STARTING
	default:
		h.State = pb.PgState_PG_STATE_STOPPED
	}
	if !st.Up {
		return h
	}
	h.InRecovery = st.InRecovery
	if st.Timeline != 0 {
		h.Timeline = st.Timeline
	}
	if st.InRecovery {
		h.ReceiveLsn, h.ReplayLsn = uint64(st.ReceiveLSN), uint64(st.ReplayLSN)
		h.WalLsn = max(h.ReceiveLsn, h.ReplayLsn)
	} else {
		h.WalLsn = uint64(st.CurrentLSN)
	}
	for _, r := range st.Replicas {
		h.Replicas = append(h.Replicas, &pb.ReplicaHealth{
			ApplicationName: r.ApplicationName, SyncState: r.SyncState, State: r.State,
			FlushLsn: uint64(r.FlushLSN), ReplayLsn: uint64(r.ReplayLSN), ReplyAgeMs: r.ReplyAge.Milliseconds(),
		})
	}
	return h
}

// memberAt names the member whose PostgreSQL listens on host:port (the
// WAL receiver's sender), or "" when none does.
func memberAt(st *pb.ClusterState, host string, port int) string {
	if host == "" || port == 0 {
		return ""
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	for _, m := range st.GetMembers() {
		if m.PgAddr == addr {
			return m.Id
		}
	}
	return ""
}
