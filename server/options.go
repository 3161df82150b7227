package server

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// Timing is the one set of time knobs of a node (see docs/configuration.md
// for the rules that tie them together). Raft's own timeouts are derived
// from them by the config package, never set on their own.
type Timing struct {
	// TTL is the primary lease.
	TTL time.Duration
	// LoopWait is the interval of lease renewals, heartbeats and the
	// decider's loop.
	LoopWait time.Duration
	// RetryTimeout bounds one quorum operation.
	RetryTimeout time.Duration
	// SafetyMargin is added by the decider to an expired lease and taken
	// off by the primary before it fences itself.
	SafetyMargin time.Duration

	RaftHeartbeat   time.Duration
	RaftElection    time.Duration
	RaftLeaderLease time.Duration
	RaftCommit      time.Duration
}

// Options configure a Server. The cmd package fills them from the config
// file; tests fill them directly (with in-memory Raft parts).
type Options struct {
	NodeID      string
	ClusterName string
	// DataDir holds the Raft log, stable store, snapshots and the identity
	// file. Empty means in-memory stores (tests only).
	DataDir string

	RaftBindAddr      string
	RaftAdvertiseAddr string
	GRPCAddr          string // advertised gRPC address
	HTTPAddr          string
	PGAddr            string
	Role              pb.MemberRole
	NonVoter          bool
	Tags              *pb.Tags

	// InitialCluster bootstraps a new cluster from a fixed list.
	InitialCluster []raft.Server
	// Expect bootstraps a new cluster once this many nodes found each
	// other through Join addresses.
	Expect int
	// Join lists gRPC addresses of members to join through.
	Join []string

	Timing Timing

	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	SnapshotRetain    int
	TrailingLogs      uint64

	// Transport overrides the TCP transport (tests use raft.InmemTransport).
	Transport raft.Transport
	// RaftTLS, when set, runs the TCP transport over mutual TLS.
	RaftTLS *RaftTLS
	// Dial returns a client for another member's gRPC address.
	Dial func(addr string) (pb.AdminClient, error)

	// Postgres is the local PostgreSQL; nil on witnesses.
	Postgres Postgres
	// Guard is the fence guard process that kills the primary's
	// postmaster if this agent stops renewing; nil disables it.
	Guard FenceGuard

	// Callbacks are the scripts run on PostgreSQL events.
	Callbacks Callbacks

	// InitialConfig is the dynamic config a new cluster starts with.
	InitialConfig *pb.DynamicConfig

	Logger  *slog.Logger
	Version string
}

func (o *Options) check() error {
	switch {
	case o.NodeID == "":
		return fmt.Errorf("%w: node_id is empty", ErrInvalid)
	case o.ClusterName == "":
		return fmt.Errorf("%w: cluster_name is empty", ErrInvalid)
	case o.Dial == nil:
		return fmt.Errorf("%w: no Dial function", ErrInvalid)
	case o.Timing.TTL <= 0 || o.Timing.LoopWait <= 0 || o.Timing.RaftHeartbeat <= 0:
		return fmt.Errorf("%w: timing not set", ErrInvalid)
	case o.Role == pb.MemberRole_MEMBER_ROLE_WITNESS && o.NonVoter:
		return fmt.Errorf("%w: a witness must be a voter", ErrInvalid)
	}
	if o.Transport == nil && o.RaftBindAddr == "" {
		return fmt.Errorf("%w: raft bind address is empty", ErrInvalid)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Role == pb.MemberRole_MEMBER_ROLE_UNSPECIFIED {
		o.Role = pb.MemberRole_MEMBER_ROLE_POSTGRES
	}
	if o.RaftAdvertiseAddr == "" {
		o.RaftAdvertiseAddr = o.RaftBindAddr
	}
	if o.SnapshotRetain == 0 {
		o.SnapshotRetain = 2
	}
	return nil
}

// self is the member record this node registers.
func (o *Options) self(raftAddr string) *pb.Member {
	suf := pb.Suffrage_SUFFRAGE_VOTER
	if o.NonVoter {
		suf = pb.Suffrage_SUFFRAGE_NONVOTER
	}
	tags := o.Tags
	if tags == nil {
		tags = &pb.Tags{}
	}
	return &pb.Member{
		Id: o.NodeID, RaftAddr: raftAddr, GrpcAddr: o.GRPCAddr, PgAddr: o.PGAddr,
		HttpAddr: o.HTTPAddr, Role: o.Role, Suffrage: suf, Tags: tags, Version: o.Version,
	}
}

// FenceGuard is the out-of-process fence (pgnode.GuardClient).
type FenceGuard interface {
	Arm(pid int, d time.Duration) error
	Disarm() error
}
