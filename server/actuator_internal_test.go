package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/pgquorum/pgquorum/fsm"
	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// recordingPG is a Postgres that only records which actions were asked of
// it; Inspect returns a fixed data directory.
type recordingPG struct {
	info      pgnode.DataDirInfo
	rewindErr error

	mu    sync.Mutex
	calls []string
}

func (r *recordingPG) rec(what string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, what)
	return nil
}

func (r *recordingPG) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recordingPG) Inspect(context.Context) (pgnode.DataDirInfo, error) { return r.info, nil }
func (r *recordingPG) Bootstrap(context.Context) (uint64, error)           { return 0, r.rec("bootstrap") }
func (r *recordingPG) Start(context.Context, pgnode.StartOptions) error    { return r.rec("start") }
func (r *recordingPG) Stop(context.Context, pgnode.StopMode) error         { return r.rec("stop") }
func (r *recordingPG) Promote(context.Context) error                       { return r.rec("promote") }
func (r *recordingPG) Checkpoint(context.Context) error                    { return r.rec("checkpoint") }
func (r *recordingPG) Rewind(context.Context, pgnode.Upstream) error {
	_ = r.rec("rewind")
	return r.rewindErr
}
func (r *recordingPG) CloneFrom(context.Context, pgnode.Upstream) error { return r.rec("clone") }
func (r *recordingPG) Reinit(context.Context, pgnode.Upstream) error    { return r.rec("reinit") }
func (r *recordingPG) Probe(context.Context) (pgnode.Status, error)     { return pgnode.Status{}, nil }
func (r *recordingPG) EnsureSlots(context.Context, []string) error      { return r.rec("slots") }
func (r *recordingPG) SetSynchronousStandbys(context.Context, []string, int) error {
	return r.rec("sync")
}
func (r *recordingPG) SetParameters(context.Context, map[string]string) ([]string, error) {
	return nil, r.rec("params")
}
func (r *recordingPG) Process() pgnode.ProcessInfo { return pgnode.ProcessInfo{} }

// actuatorOn returns an actuator for node n3 over an FSM that has applied
// cmds, and the Postgres it drives.
func actuatorOn(t *testing.T, info pgnode.DataDirInfo, cmds ...proto.Message) (*actuator, *recordingPG) {
	t.Helper()
	f := fsm.New(16)
	for i, c := range cmds {
		if err := f.ApplyCommand(uint64(i+1), c); err != nil {
			t.Fatalf("apply %T: %v", c, err)
		}
	}
	s := &Server{
		opts: Options{NodeID: "n3", Timing: testTiming},
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		fsm:  f,
	}
	pg := &recordingPG{info: info}
	return newActuator(s, pg), pg
}

func member(id string) *pb.Member {
	return &pb.Member{
		Id: id, RaftAddr: id + ":7000", GrpcAddr: id + ":7001", PgAddr: "127.0.0.1:5432",
		Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Suffrage: pb.Suffrage_SUFFRAGE_VOTER,
	}
}

// TestActuator_UnverifiedDataDirIsNotTouched: a restarted node applies its
// log in batches, so for a moment its FSM holds the primary assignment but
// not yet the system identifier the primary recorded after it. A data
// directory seen then — here another cluster's, a primary in its own
// right — must be left alone: rewinding or re-cloning it would destroy it.
// (Found by internal/e2e's TestForeignDataDir_Refused in CI: the foreign
// directory was wiped and cloned over.)
func TestActuator_UnverifiedDataDirIsNotTouched(t *testing.T) {
	foreign := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15",
		SystemIdentifier: 777, ClusterState: "shut down", CleanShutdown: true, Timeline: 1,
	}
	base := []proto.Message{
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n2")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n1", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
	}
	ctx := context.Background()

	a, pg := actuatorOn(t, foreign, base...)
	if err := a.converge(ctx); err != nil {
		t.Fatalf("converge before the system identifier is known: %v", err)
	}
	if calls := pg.Calls(); len(calls) != 0 {
		t.Fatalf("actuator acted on an unverified data directory: %v", calls)
	}

	// Once the identifier is known, the mismatch is reported and still
	// nothing is done.
	a, pg = actuatorOn(t, foreign, append(base, &pb.SetSystemID{SystemIdentifier: 42})...)
	if err := a.converge(ctx); err == nil {
		t.Fatal("converge with a foreign data directory: no error")
	}
	if calls := pg.Calls(); len(calls) != 0 {
		t.Fatalf("actuator acted on a foreign data directory: %v", calls)
	}

	// A former primary of this cluster is rewound (the path the guard
	// must not block).
	own := foreign
	own.SystemIdentifier = 42
	a, pg = actuatorOn(t, own, append(base, &pb.SetSystemID{SystemIdentifier: 42})...)
	if err := a.converge(ctx); err != nil {
		t.Fatalf("converge of a former primary: %v", err)
	}
	if calls := pg.Calls(); !slices.Contains(calls, "rewind") {
		t.Fatalf("former primary of this cluster not rewound: %v", calls)
	}
}

// TestActuator_RejoinWaitsForThePromotion: a rewind refused because the
// new primary is still in recovery is retried later, never turned into a
// re-clone (which is what a failed rewind leads to).
func TestActuator_RejoinWaitsForThePromotion(t *testing.T) {
	own := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15",
		SystemIdentifier: 42, ClusterState: "shut down", CleanShutdown: true, Timeline: 1,
	}
	a, pg := actuatorOn(t, own,
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n3", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
		&pb.SetSystemID{SystemIdentifier: 42},
		&pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "n1", Timeline: 2, Reason: "failover", AtUnixMs: 3},
	)
	pg.rewindErr = fmt.Errorf("rewind: %w", pgnode.ErrSourceInRecovery)
	err := a.converge(context.Background())
	if !errors.Is(err, pgnode.ErrSourceInRecovery) {
		t.Fatalf("converge: %v, want ErrSourceInRecovery", err)
	}
	if calls := pg.Calls(); !slices.Contains(calls, "rewind") || slices.Contains(calls, "reinit") || slices.Contains(calls, "start") {
		t.Fatalf("calls %v: want a rewind attempt and nothing else that changes the directory", calls)
	}
}
