package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	status    pgnode.Status
	diverged  bool
	proc      pgnode.ProcessInfo
	onStart   func()

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
func (r *recordingPG) Start(context.Context, pgnode.StartOptions) error {
	if r.onStart != nil {
		r.onStart()
	}
	return r.rec("start")
}
func (r *recordingPG) Stop(context.Context, pgnode.StopMode) error { return r.rec("stop") }
func (r *recordingPG) Promote(context.Context) error               { return r.rec("promote") }
func (r *recordingPG) PrepareStop(context.Context) error           { return r.rec("checkpoint") }
func (r *recordingPG) Rewind(context.Context, pgnode.Upstream) error {
	_ = r.rec("rewind")
	return r.rewindErr
}
func (r *recordingPG) CloneFrom(context.Context, pgnode.Upstream) error { return r.rec("clone") }
func (r *recordingPG) Reinit(context.Context, pgnode.Upstream) error    { return r.rec("reinit") }
func (r *recordingPG) Probe(context.Context) (pgnode.Status, error)     { return r.status, nil }
func (r *recordingPG) WriteProbe(context.Context, time.Duration) error  { return nil }
func (r *recordingPG) Diverged(context.Context, pgnode.Upstream) (bool, error) {
	return r.diverged, r.rec("diverged?")
}
func (r *recordingPG) EnsureSlots(_ context.Context, names []string) error {
	return r.rec("slots:" + strings.Join(names, ","))
}
func (r *recordingPG) SetSynchronousStandbys(context.Context, []string, int) error {
	return r.rec("sync")
}
func (r *recordingPG) SetParameters(context.Context, map[string]string) ([]string, error) {
	return nil, r.rec("params")
}
func (r *recordingPG) UseParameters(map[string]string) error { return nil }
func (r *recordingPG) EnsureRoles(context.Context) error     { return nil }
func (r *recordingPG) Process() pgnode.ProcessInfo           { return r.proc }

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

// runningStandby is the data directory of a standby running under its
// agent, as Inspect reports it.
var runningStandby = pgnode.DataDirInfo{
	Path: "/data", Exists: true, Initialized: true, Version: "15", SystemIdentifier: 42,
	ClusterState: "in archive recovery", Running: true, Standby: true, Timeline: 1, PostmasterPID: 7,
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
	a, pg = actuatorOn(t, own, append(base, &pb.SetSystemID{SystemIdentifier: 42}, &pb.ExposePrimary{Epoch: 1})...)
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
	// A stopped former primary waits for the new one's exposure first.
	if err := a.converge(context.Background()); err != nil || slices.Contains(pg.Calls(), "rewind") || slices.Contains(pg.Calls(), "start") {
		t.Fatalf("before the exposure: converge %v, calls %v; want no rewind or start", err, pg.Calls())
	}
	if err := a.s.fsm.ApplyCommand(100, &pb.ExposePrimary{Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	// Then for rejoinDelay: nothing waits for it (asynchronous mode).
	if err := a.converge(context.Background()); err != nil || slices.Contains(pg.Calls(), "rewind") {
		t.Fatalf("right after the exposure: converge %v, calls %v; want no rewind yet", err, pg.Calls())
	}
	a.mu.Lock()
	a.exposedSeen = a.exposedSeen.Add(-rejoinDelay)
	a.mu.Unlock()
	pg.rewindErr = fmt.Errorf("rewind: %w", pgnode.ErrSourceInRecovery)
	err := a.converge(context.Background())
	if !errors.Is(err, pgnode.ErrSourceInRecovery) {
		t.Fatalf("converge: %v, want ErrSourceInRecovery", err)
	}
	if calls := pg.Calls(); !slices.Contains(calls, "rewind") || slices.Contains(calls, "reinit") || slices.Contains(calls, "start") {
		t.Fatalf("calls %v: want a rewind attempt and nothing else that changes the directory", calls)
	}
}

// TestActuator_RejoinAtOnceWhenNeededAsSync: a former primary that the new
// primary may wait for as a synchronous standby rejoins as soon as the new
// primary is exposed; one that the recorded synchronous set does without
// waits rejoinDelay like in asynchronous mode.
func TestActuator_RejoinAtOnceWhenNeededAsSync(t *testing.T) {
	own := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15",
		SystemIdentifier: 42, ClusterState: "shut down", CleanShutdown: true, Timeline: 1,
	}
	for _, tc := range []struct {
		name       string
		sync       []string
		wantRewind bool
	}{
		{"no synchronous set recorded", nil, true},
		{"in the synchronous set", []string{"n3"}, true},
		{"another member is enough", []string{"n2"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// n3 (this node) was primary at epoch 1; n1 took over at 2.
			cmds := append(epochCmds(1),
				&pb.SetConfig{ExpectedVersion: 1, Config: &pb.DynamicConfig{SynchronousMode: pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT}},
				&pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "n1", Timeline: 2, Reason: "switchover", AtUnixMs: 3})
			a, pg := actuatorOn(t, own, cmds...)
			_ = a.converge(context.Background()) // sees epoch 2 before its exposure
			exposure := []proto.Message{&pb.ExposePrimary{Epoch: 2}}
			if tc.sync != nil {
				exposure = append(exposure, &pb.SetSync{Epoch: 2, Members: tc.sync})
			}
			for i, c := range exposure {
				if err := a.s.fsm.ApplyCommand(uint64(100+i), c); err != nil {
					t.Fatal(err)
				}
			}
			_ = a.converge(context.Background())
			if got := slices.Contains(pg.Calls(), "rewind"); got != tc.wantRewind {
				t.Fatalf("right after the exposure: calls %v; rewind %v, want %v", pg.Calls(), got, tc.wantRewind)
			}
		})
	}
}

// TestActuator_DivergedStandbyIsRewound: a running standby that follows
// the primary but has not streamed for longer than the grace is checked
// for divergence and rewound when it diverged; one that streams, or did
// not diverge, is left alone.
func TestActuator_DivergedStandbyIsRewound(t *testing.T) {
	standby := runningStandby
	cmds := []proto.Message{
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n2")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n2", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
		&pb.SetSystemID{SystemIdentifier: 42},
		&pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "n1", Timeline: 1, Reason: "failover", AtUnixMs: 3},
	}
	for _, tc := range []struct {
		name        string
		streaming   bool
		diverged    bool
		wantRewind  bool
		wantChecked bool
	}{
		{"streaming", true, true, false, false},
		{"stuck, not diverged", false, false, false, true},
		{"stuck and diverged", false, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, pg := actuatorOn(t, standby, cmds...)
			pg.proc = pgnode.ProcessInfo{State: pgnode.ProcessRunning, PID: 7}
			pg.diverged = tc.diverged
			if tc.streaming {
				pg.status = pgnode.Status{Up: true, InRecovery: true, WALReceiver: "streaming"}
			} else {
				pg.status = pgnode.Status{Up: true, InRecovery: true}
			}
			up, err := upstreamOf(member("n1"), "n3")
			if err != nil {
				t.Fatal(err)
			}
			a.following = up
			a.stuckSince = time.Now().Add(-time.Hour)
			_ = a.converge(context.Background())
			calls := pg.Calls()
			if got := slices.Contains(calls, "diverged?"); got != tc.wantChecked {
				t.Errorf("divergence checked = %v, want %v (calls %v)", got, tc.wantChecked, calls)
			}
			if got := slices.Contains(calls, "rewind"); got != tc.wantRewind {
				t.Errorf("rewound = %v, want %v (calls %v)", got, tc.wantRewind, calls)
			}
		})
	}
}

// TestActuator_PrimaryStartedPastItsLeaseIsStopped: a primary restarted in
// place whose start outlasted its lease (renewals failing meanwhile) is
// stopped again at once instead of taking writes while the decider may be
// promoting another member (found by the chaos campaign: 2.6 s with two
// primaries).
func TestActuator_PrimaryStartedPastItsLeaseIsStopped(t *testing.T) {
	crashed := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15", SystemIdentifier: 42,
		ClusterState: "in production", Timeline: 1,
	}
	a, pg := actuatorOn(t, crashed,
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n3", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
		&pb.SetSystemID{SystemIdentifier: 42},
	)
	a.noteLease(1, time.Now()) // held when the start begins
	pg.onStart = func() {
		a.mu.Lock()
		a.leaseUntil = time.Now().Add(-time.Second) // ran out during the start
		a.mu.Unlock()
	}
	err := a.converge(context.Background())
	if err == nil {
		t.Fatal("converge: no error for a primary that came up after its lease")
	}
	calls := pg.Calls()
	if i := slices.Index(calls, "start"); i < 0 || !slices.Contains(calls[i:], "stop") {
		t.Fatalf("calls %v: want the start followed by a stop", calls)
	}
}

// TestActuator_StandbyDropsLeftoverSlots: a standby drops the replication
// slots it holds (left from a time it was, or was about to become, the
// primary: they would retain WAL on it for good), once per epoch.
func TestActuator_StandbyDropsLeftoverSlots(t *testing.T) {
	standby := runningStandby
	a, pg := actuatorOn(t, standby,
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n1", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
		&pb.SetSystemID{SystemIdentifier: 42},
	)
	pg.status = pgnode.Status{Up: true, InRecovery: true, WALReceiver: "streaming", Timeline: 2}
	for range 3 {
		if err := a.converge(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var drops int
	for _, c := range pg.Calls() {
		if strings.HasPrefix(c, "slots:") {
			if c != "slots:" {
				t.Fatalf("a standby ensured slots %q; want none kept", c)
			}
			drops++
		}
	}
	if drops != 1 {
		t.Fatalf("slots dropped %d times in one epoch (calls %v); want once", drops, pg.Calls())
	}
}

// TestActuator_HealthNamesUpstreamAndAge: a streaming standby's health
// names the member it streams from, and every health says how old its
// probe is.
func TestActuator_HealthNamesUpstreamAndAge(t *testing.T) {
	standby := runningStandby
	a, pg := actuatorOn(t, standby,
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n3")},
	)
	pg.status = pgnode.Status{Up: true, InRecovery: true, WALReceiver: "streaming", Timeline: 1,
		UpstreamHost: "127.0.0.1", UpstreamPort: 5432}
	a.probe(context.Background())
	h := a.Health()
	if h.GetUpstream() != "n1" || h.GetProbeAgeMs() < 0 || h.GetProbeAgeMs() > 10_000 {
		t.Fatalf("health upstream %q, probe age %d ms; want n1 and a fresh age", h.GetUpstream(), h.GetProbeAgeMs())
	}
	if got := memberAt(a.s.fsm.State(), "127.0.0.1", 5999); got != "" {
		t.Fatalf("memberAt on a port no member has: %q", got)
	}
}
