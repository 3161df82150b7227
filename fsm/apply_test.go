package fsm

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// applyCase is one command applied to a base state. want edits a copy of
// the state before the command into the expected state after it; for a
// refusal the state must be unchanged but for the applied index.
type applyCase struct {
	name      string
	base      func(testing.TB) *FSM
	setup     []proto.Message // applied to base first; must be accepted
	cmd       proto.Message
	wantErr   error
	want      func(st *pb.ClusterState)
	wantDelta *pb.StateDelta // nil: nothing published
}

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.base(t)
			mustRun(t, f, tc.setup...)
			before := f.State()
			delta, err := run(t, f, tc.cmd)
			if !isErr(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			want := proto.Clone(before).(*pb.ClusterState)
			if tc.wantErr == nil && tc.want != nil {
				tc.want(want)
			}
			want.Index = before.Index + 1
			if got := f.State(); !proto.Equal(got, want) {
				t.Fatalf("state after:\n got %v\nwant %v", got, want)
			}
			if !proto.Equal(delta, tc.wantDelta) {
				t.Fatalf("delta:\n got %v\nwant %v", delta, tc.wantDelta)
			}
			if tc.wantErr != nil && delta != nil {
				t.Fatalf("refused command published %v", delta)
			}
			checkInvariants(t, f.State())
		})
	}
}

func newEmpty(testing.TB) *FSM { return New(64) }

func TestApply_InitCluster(t *testing.T) {
	wantCfg := proto.Clone(testInit.InitialConfig).(*pb.DynamicConfig)
	wantCfg.Version = 1
	wantID := &pb.ClusterIdentity{Name: testInit.Name, Uuid: testInit.Uuid, CreatedAtUnixMs: testInit.AtUnixMs}
	runApplyCases(t, []applyCase{
		{
			name: "accepted", base: newEmpty, cmd: testInit,
			want: func(st *pb.ClusterState) {
				st.Identity = wantID
				st.Config = wantCfg
			},
			wantDelta: &pb.StateDelta{Identity: wantID, Config: wantCfg},
		},
		{
			name: "no initial config", base: newEmpty,
			cmd: &pb.InitCluster{Name: "n", Uuid: "u", AtUnixMs: 5},
			want: func(st *pb.ClusterState) {
				st.Identity = &pb.ClusterIdentity{Name: "n", Uuid: "u", CreatedAtUnixMs: 5}
				st.Config = &pb.DynamicConfig{Version: 1}
			},
			wantDelta: &pb.StateDelta{
				Identity: &pb.ClusterIdentity{Name: "n", Uuid: "u", CreatedAtUnixMs: 5},
				Config:   &pb.DynamicConfig{Version: 1},
			},
		},
		{
			name: "initial config version is ignored", base: newEmpty,
			cmd: &pb.InitCluster{Name: "n", Uuid: "u", InitialConfig: &pb.DynamicConfig{Version: 9, SynchronousNodeCount: 2}},
			want: func(st *pb.ClusterState) {
				st.Identity = &pb.ClusterIdentity{Name: "n", Uuid: "u"}
				st.Config = &pb.DynamicConfig{Version: 1, SynchronousNodeCount: 2}
			},
			wantDelta: &pb.StateDelta{
				Identity: &pb.ClusterIdentity{Name: "n", Uuid: "u"},
				Config:   &pb.DynamicConfig{Version: 1, SynchronousNodeCount: 2},
			},
		},
		{name: "twice", base: newInitialized, cmd: testInit, wantErr: ErrAlreadyInitialized},
		{name: "other uuid", base: newInitialized, cmd: &pb.InitCluster{Name: "x", Uuid: "other"}, wantErr: ErrAlreadyInitialized},
		{name: "missing name", base: newEmpty, cmd: &pb.InitCluster{Uuid: "u"}, wantErr: ErrBadCommand},
		{name: "missing uuid", base: newEmpty, cmd: &pb.InitCluster{Name: "n"}, wantErr: ErrBadCommand},
	})
}

func TestApply_UpsertMember(t *testing.T) {
	moved := pgMember("b")
	moved.PgAddr = "b2:5432"
	moved.Tags = &pb.Tags{Nofailover: true}
	runApplyCases(t, []applyCase{
		{
			name: "insert keeps order", base: newInitialized,
			setup: []proto.Message{&pb.UpsertMember{Member: pgMember("c")}, &pb.UpsertMember{Member: pgMember("a")}},
			cmd:   &pb.UpsertMember{Member: pgMember("b")},
			want: func(st *pb.ClusterState) {
				st.Members = []*pb.Member{pgMember("a"), pgMember("b"), pgMember("c")}
			},
			wantDelta: &pb.StateDelta{UpsertedMembers: []*pb.Member{pgMember("b")}},
		},
		{
			name: "insert last", base: newInitialized,
			setup: []proto.Message{&pb.UpsertMember{Member: pgMember("a")}},
			cmd:   &pb.UpsertMember{Member: witness("z")},
			want: func(st *pb.ClusterState) {
				st.Members = []*pb.Member{pgMember("a"), witness("z")}
			},
			wantDelta: &pb.StateDelta{UpsertedMembers: []*pb.Member{witness("z")}},
		},
		{
			name: "replace", base: newCluster, cmd: &pb.UpsertMember{Member: moved},
			want:      func(st *pb.ClusterState) { st.Members[1] = moved },
			wantDelta: &pb.StateDelta{UpsertedMembers: []*pb.Member{moved}},
		},
		{
			name: "identical publishes nothing", base: newCluster,
			cmd: &pb.UpsertMember{Member: pgMember("b")},
		},
		{
			name: "primary stays postgres", base: newCluster,
			cmd:  &pb.UpsertMember{Member: func() *pb.Member { m := pgMember("a"); m.Version = "2"; return m }()},
			want: func(st *pb.ClusterState) { st.Members[0].Version = "2" },
			wantDelta: &pb.StateDelta{UpsertedMembers: []*pb.Member{
				func() *pb.Member { m := pgMember("a"); m.Version = "2"; return m }(),
			}},
		},
		{
			name: "removed member refused", base: newCluster,
			setup:   []proto.Message{&pb.RemoveMember{Id: "b", Tombstone: true}},
			cmd:     &pb.UpsertMember{Member: pgMember("b")},
			wantErr: ErrMemberRemoved,
		},
		{
			name: "explicit add clears the tombstone", base: newCluster,
			setup: []proto.Message{&pb.RemoveMember{Id: "b", Tombstone: true}},
			cmd:   &pb.UpsertMember{Member: pgMember("b"), Readmit: true},
			want: func(st *pb.ClusterState) {
				st.Members = []*pb.Member{pgMember("a"), pgMember("b"), pgMember("c"), witness("w")}
				st.Tombstones = nil
			},
			wantDelta: &pb.StateDelta{UpsertedMembers: []*pb.Member{pgMember("b")}, TombstoneCleared: "b"},
		},
		{
			name: "explicit add of a member never removed", base: newInitialized,
			cmd:       &pb.UpsertMember{Member: pgMember("b"), Readmit: true},
			want:      func(st *pb.ClusterState) { st.Members = []*pb.Member{pgMember("b")} },
			wantDelta: &pb.StateDelta{UpsertedMembers: []*pb.Member{pgMember("b")}},
		},
		{name: "primary to witness", base: newCluster, cmd: &pb.UpsertMember{Member: witness("a")}, wantErr: ErrNotEligible},
		{name: "no member", base: newInitialized, cmd: &pb.UpsertMember{}, wantErr: ErrBadCommand},
		{name: "empty id", base: newInitialized, cmd: &pb.UpsertMember{Member: &pb.Member{RaftAddr: "x:1"}}, wantErr: ErrBadCommand},
	})
}

func TestApply_RemoveMember(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "accepted", base: newCluster, cmd: &pb.RemoveMember{Id: "b"},
			want: func(st *pb.ClusterState) {
				st.Members = []*pb.Member{pgMember("a"), pgMember("c"), witness("w")}
			},
			wantDelta: &pb.StateDelta{RemovedMembers: []string{"b"}},
		},
		{
			name: "sync standby leaves the sync set", base: newCluster,
			setup: []proto.Message{&pb.SetSync{Epoch: 1, Members: []string{"b", "c"}}},
			cmd:   &pb.RemoveMember{Id: "b"},
			want: func(st *pb.ClusterState) {
				st.Members = []*pb.Member{pgMember("a"), pgMember("c"), witness("w")}
				st.Sync.Members = []string{"c"}
			},
			wantDelta: &pb.StateDelta{RemovedMembers: []string{"b"}, Sync: &pb.SyncState{Epoch: 1, Members: []string{"c"}}},
		},
		{
			name: "operator removal records a tombstone", base: newCluster,
			cmd: &pb.RemoveMember{Id: "b", Tombstone: true},
			want: func(st *pb.ClusterState) {
				st.Members = []*pb.Member{pgMember("a"), pgMember("c"), witness("w")}
				st.Tombstones = []*pb.Tombstone{{Id: "b", Index: st.Index + 1}}
			},
			wantDelta: &pb.StateDelta{RemovedMembers: []string{"b"}, Tombstone: &pb.Tombstone{Id: "b", Index: 7}},
		},
		{
			// In Raft but never registered: the tombstone still keeps it out.
			name: "tombstone without a member record", base: newCluster,
			cmd:       &pb.RemoveMember{Id: "zz", Tombstone: true},
			want:      func(st *pb.ClusterState) { st.Tombstones = []*pb.Tombstone{{Id: "zz", Index: st.Index + 1}} },
			wantDelta: &pb.StateDelta{Tombstone: &pb.Tombstone{Id: "zz", Index: 7}},
		},
		{
			name: "tombstone twice publishes nothing", base: newCluster,
			setup: []proto.Message{&pb.RemoveMember{Id: "zz", Tombstone: true}},
			cmd:   &pb.RemoveMember{Id: "zz", Tombstone: true},
		},
		{
			name: "tombstones are bounded, oldest dropped", base: newCluster,
			setup: func() []proto.Message {
				var out []proto.Message
				for i := range TombstoneLimit {
					out = append(out, &pb.RemoveMember{Id: fmt.Sprintf("x%02d", i), Tombstone: true})
				}
				return out
			}(),
			cmd: &pb.RemoveMember{Id: "zz", Tombstone: true},
			want: func(st *pb.ClusterState) {
				st.Tombstones = append(st.Tombstones[1:], &pb.Tombstone{Id: "zz", Index: st.Index + 1})
			},
			wantDelta: &pb.StateDelta{Tombstone: &pb.Tombstone{Id: "zz", Index: 6 + TombstoneLimit + 1}},
		},
		{name: "tombstone of the primary", base: newCluster, cmd: &pb.RemoveMember{Id: "a", Tombstone: true}, wantErr: ErrRemovePrimary},
		{name: "unknown", base: newCluster, cmd: &pb.RemoveMember{Id: "zz"}, wantErr: ErrMemberNotFound},
		{name: "empty id", base: newCluster, cmd: &pb.RemoveMember{}, wantErr: ErrMemberNotFound},
		{name: "primary", base: newCluster, cmd: &pb.RemoveMember{Id: "a"}, wantErr: ErrRemovePrimary},
	})
}

func TestApply_SetConfig(t *testing.T) {
	cfg := &pb.DynamicConfig{SynchronousMode: pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT, PostgresParameters: map[string]string{"a": "b"}}
	v2 := proto.Clone(cfg).(*pb.DynamicConfig)
	v2.Version = 2
	v3 := proto.Clone(cfg).(*pb.DynamicConfig)
	v3.Version = 3
	runApplyCases(t, []applyCase{
		{
			name: "accepted", base: newCluster, cmd: &pb.SetConfig{ExpectedVersion: 1, Config: cfg},
			want:      func(st *pb.ClusterState) { st.Config = v2 },
			wantDelta: &pb.StateDelta{Config: v2},
		},
		{
			name: "version in config is ignored", base: newCluster,
			setup:     []proto.Message{&pb.SetConfig{ExpectedVersion: 1, Config: &pb.DynamicConfig{}}},
			cmd:       &pb.SetConfig{ExpectedVersion: 2, Config: func() *pb.DynamicConfig { c := proto.Clone(cfg).(*pb.DynamicConfig); c.Version = 77; return c }()},
			want:      func(st *pb.ClusterState) { st.Config = v3 },
			wantDelta: &pb.StateDelta{Config: v3},
		},
		{name: "stale version", base: newCluster, cmd: &pb.SetConfig{ExpectedVersion: 0, Config: cfg}, wantErr: ErrConfigConflict},
		{name: "future version", base: newCluster, cmd: &pb.SetConfig{ExpectedVersion: 2, Config: cfg}, wantErr: ErrConfigConflict},
		{name: "no config", base: newCluster, cmd: &pb.SetConfig{ExpectedVersion: 1}, wantErr: ErrBadCommand},
		{name: "not initialized", base: newEmpty, cmd: &pb.SetConfig{ExpectedVersion: 0, Config: cfg}, wantErr: ErrNotInitialized},
	})
}

func TestApply_AssignPrimary(t *testing.T) {
	first := &pb.PrimaryAssignment{MemberId: "b", Epoch: 1, Timeline: 3, AssignedAtUnixMs: 50, Reason: "bootstrap"}
	second := &pb.PrimaryAssignment{MemberId: "b", Epoch: 2, Timeline: 2, AssignedAtUnixMs: 60, Reason: "switchover"}
	runApplyCases(t, []applyCase{
		{
			name: "first", base: newInitialized,
			setup: []proto.Message{&pb.UpsertMember{Member: pgMember("b")}},
			cmd:   &pb.AssignPrimary{ExpectedEpoch: 0, MemberId: "b", Timeline: 3, Reason: "bootstrap", AtUnixMs: 50},
			want: func(st *pb.ClusterState) {
				st.Primary = first
				st.Sync = &pb.SyncState{Epoch: 1}
				st.History = []*pb.HistoryEntry{{Epoch: 1, NewMember: "b", Reason: "bootstrap", AtUnixMs: 50, Timeline: 3, Index: st.Index + 1}}
			},
			wantDelta: &pb.StateDelta{
				Primary: first, Sync: &pb.SyncState{Epoch: 1},
				History: &pb.HistoryEntry{Epoch: 1, NewMember: "b", Reason: "bootstrap", AtUnixMs: 50, Timeline: 3, Index: 3},
			},
		},
		{
			name: "switchover resets lease and sync", base: newCluster,
			setup: []proto.Message{
				&pb.RenewLease{MemberId: "a", Epoch: 1},
				&pb.SetSync{Epoch: 1, Members: []string{"b"}},
			},
			cmd: &pb.AssignPrimary{ExpectedEpoch: 1, ExpectedLeaseSeq: 1, MemberId: "b", Timeline: 2, Reason: "switchover", AtUnixMs: 60},
			want: func(st *pb.ClusterState) {
				st.Primary = second
				st.Sync = &pb.SyncState{Epoch: 2}
				st.History = append(st.History, &pb.HistoryEntry{
					Epoch: 2, OldMember: "a", NewMember: "b", Reason: "switchover", AtUnixMs: 60, Timeline: 2, Index: st.Index + 1,
				})
			},
			wantDelta: &pb.StateDelta{
				Primary: second, Sync: &pb.SyncState{Epoch: 2},
				History: &pb.HistoryEntry{Epoch: 2, OldMember: "a", NewMember: "b", Reason: "switchover", AtUnixMs: 60, Timeline: 2, Index: 9},
			},
		},
		{
			name: "clears the switchover", base: newCluster,
			setup: []proto.Message{
				&pb.SetSwitchover{Switchover: &pb.Switchover{From: "a", To: "c", Epoch: 1, SteppingDown: true}},
				&pb.ReleaseLease{MemberId: "a", Epoch: 1, Lsn: 99},
			},
			cmd: &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "c", Reason: "switchover"},
			want: func(st *pb.ClusterState) {
				st.Primary = &pb.PrimaryAssignment{MemberId: "c", Epoch: 2, Reason: "switchover"}
				st.Sync = &pb.SyncState{Epoch: 2}
				st.Switchover = nil
				st.History = append(st.History, &pb.HistoryEntry{Epoch: 2, OldMember: "a", NewMember: "c", Reason: "switchover", Index: st.Index + 1})
			},
			wantDelta: &pb.StateDelta{
				Primary: &pb.PrimaryAssignment{MemberId: "c", Epoch: 2, Reason: "switchover"}, Sync: &pb.SyncState{Epoch: 2},
				History:           &pb.HistoryEntry{Epoch: 2, OldMember: "a", NewMember: "c", Reason: "switchover", Index: 9},
				SwitchoverCleared: true,
			},
		},
		{name: "not initialized", base: newEmpty, cmd: &pb.AssignPrimary{MemberId: "a"}, wantErr: ErrNotInitialized},
		{
			name: "lease renewed since the decision", base: newCluster,
			setup: []proto.Message{&pb.RenewLease{MemberId: "a", Epoch: 1}},
			cmd:   &pb.AssignPrimary{ExpectedEpoch: 1, ExpectedLeaseSeq: 0, MemberId: "b"}, wantErr: ErrStaleEpoch,
		},
		{name: "future lease seq", base: newCluster, cmd: &pb.AssignPrimary{ExpectedEpoch: 1, ExpectedLeaseSeq: 1, MemberId: "b"}, wantErr: ErrStaleEpoch},
		{name: "stale epoch", base: newCluster, cmd: &pb.AssignPrimary{ExpectedEpoch: 0, MemberId: "b"}, wantErr: ErrStaleEpoch},
		{name: "future epoch", base: newCluster, cmd: &pb.AssignPrimary{ExpectedEpoch: 2, MemberId: "b"}, wantErr: ErrStaleEpoch},
		{name: "unknown member", base: newCluster, cmd: &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "zz"}, wantErr: ErrMemberNotFound},
		{name: "witness", base: newCluster, cmd: &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "w"}, wantErr: ErrNotEligible},
	})
}

func TestApply_AssignPrimaryHistoryLimit(t *testing.T) {
	f := newCluster(t)
	const extra = 7
	for e := uint64(1); e < HistoryLimit+extra; e++ {
		id := []string{"a", "b", "c"}[e%3]
		mustRun(t, f, &pb.AssignPrimary{ExpectedEpoch: e, MemberId: id, Reason: fmt.Sprint(e)})
	}
	st := f.State()
	if st.Primary.Epoch != HistoryLimit+extra {
		t.Fatalf("epoch %d, want %d", st.Primary.Epoch, HistoryLimit+extra)
	}
	if len(st.History) != HistoryLimit {
		t.Fatalf("history has %d entries, want %d", len(st.History), HistoryLimit)
	}
	if got := st.History[0].Epoch; got != extra+1 {
		t.Fatalf("oldest kept epoch %d, want %d", got, extra+1)
	}
	checkInvariants(t, st)
}

func TestApply_RenewLease(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "accepted publishes nothing", base: newCluster,
			cmd:  &pb.RenewLease{MemberId: "a", Epoch: 1},
			want: func(st *pb.ClusterState) { st.Primary.LeaseSeq = 1 },
		},
		{
			name: "counts renewals", base: newCluster,
			setup: []proto.Message{&pb.RenewLease{MemberId: "a", Epoch: 1}, &pb.RenewLease{MemberId: "a", Epoch: 1}},
			cmd:   &pb.RenewLease{MemberId: "a", Epoch: 1},
			want:  func(st *pb.ClusterState) { st.Primary.LeaseSeq = 3 },
		},
		{name: "stale epoch", base: newCluster, cmd: &pb.RenewLease{MemberId: "a", Epoch: 0}, wantErr: ErrStaleEpoch},
		{name: "future epoch", base: newCluster, cmd: &pb.RenewLease{MemberId: "a", Epoch: 2}, wantErr: ErrStaleEpoch},
		{name: "not the primary", base: newCluster, cmd: &pb.RenewLease{MemberId: "b", Epoch: 1}, wantErr: ErrNotPrimary},
		{name: "no primary", base: newInitialized, cmd: &pb.RenewLease{Epoch: 0}, wantErr: ErrNotPrimary},
		{
			name: "after release", base: newCluster,
			setup: []proto.Message{&pb.ReleaseLease{MemberId: "a", Epoch: 1}},
			cmd:   &pb.RenewLease{MemberId: "a", Epoch: 1}, wantErr: ErrNotPrimary,
		},
		{
			name: "old primary after switchover", base: newCluster,
			setup: []proto.Message{&pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "b"}},
			cmd:   &pb.RenewLease{MemberId: "a", Epoch: 1}, wantErr: ErrStaleEpoch,
		},
	})
}

func TestApply_ReleaseLease(t *testing.T) {
	released := &pb.PrimaryAssignment{
		MemberId: "a", Epoch: 1, Timeline: 1, Reason: "bootstrap", AssignedAtUnixMs: 2000,
		LeaseSeq: 1, Released: true, ReleasedLsn: 0x3000060,
	}
	runApplyCases(t, []applyCase{
		{
			name: "accepted", base: newCluster,
			setup:     []proto.Message{&pb.RenewLease{MemberId: "a", Epoch: 1}},
			cmd:       &pb.ReleaseLease{MemberId: "a", Epoch: 1, Lsn: 0x3000060, Reason: "switchover"},
			want:      func(st *pb.ClusterState) { st.Primary = released },
			wantDelta: &pb.StateDelta{Primary: released},
		},
		{
			name: "twice publishes nothing", base: newCluster,
			setup: []proto.Message{&pb.RenewLease{MemberId: "a", Epoch: 1}, &pb.ReleaseLease{MemberId: "a", Epoch: 1, Lsn: 0x3000060}},
			cmd:   &pb.ReleaseLease{MemberId: "a", Epoch: 1, Lsn: 1},
		},
		{name: "stale epoch", base: newCluster, cmd: &pb.ReleaseLease{MemberId: "a", Epoch: 0}, wantErr: ErrStaleEpoch},
		{name: "future epoch", base: newCluster, cmd: &pb.ReleaseLease{MemberId: "a", Epoch: 2}, wantErr: ErrStaleEpoch},
		{name: "not the primary", base: newCluster, cmd: &pb.ReleaseLease{MemberId: "b", Epoch: 1}, wantErr: ErrNotPrimary},
		{name: "no primary", base: newInitialized, cmd: &pb.ReleaseLease{}, wantErr: ErrNotPrimary},
	})
}

func TestApply_SetSwitchover(t *testing.T) {
	sw := &pb.Switchover{From: "a", To: "b", Epoch: 1, ScheduledAtUnixMs: 5000, RequestedAtUnixMs: 4000}
	stepping := proto.Clone(sw).(*pb.Switchover)
	stepping.SteppingDown = true
	runApplyCases(t, []applyCase{
		{
			name: "planned", base: newCluster, cmd: &pb.SetSwitchover{Switchover: sw},
			want:      func(st *pb.ClusterState) { st.Switchover = sw },
			wantDelta: &pb.StateDelta{Switchover: sw},
		},
		{
			name: "any candidate", base: newCluster, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{From: "a", Epoch: 1}},
			want:      func(st *pb.ClusterState) { st.Switchover = &pb.Switchover{From: "a", Epoch: 1} },
			wantDelta: &pb.StateDelta{Switchover: &pb.Switchover{From: "a", Epoch: 1}},
		},
		{
			name: "stepping down", base: newCluster,
			setup:     []proto.Message{&pb.SetSwitchover{Switchover: sw}},
			cmd:       &pb.SetSwitchover{Switchover: stepping},
			want:      func(st *pb.ClusterState) { st.Switchover = stepping },
			wantDelta: &pb.StateDelta{Switchover: stepping},
		},
		{
			name: "cancel", base: newCluster,
			setup:     []proto.Message{&pb.SetSwitchover{Switchover: sw}},
			cmd:       &pb.SetSwitchover{},
			want:      func(st *pb.ClusterState) { st.Switchover = nil },
			wantDelta: &pb.StateDelta{SwitchoverCleared: true},
		},
		{name: "cancel with none publishes nothing", base: newCluster, cmd: &pb.SetSwitchover{}},
		{name: "stale epoch", base: newCluster, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{From: "a", To: "b", Epoch: 0}}, wantErr: ErrStaleEpoch},
		{name: "from not the primary", base: newCluster, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{From: "b", To: "c", Epoch: 1}}, wantErr: ErrStaleEpoch},
		{name: "no primary", base: newInitialized, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{}}, wantErr: ErrStaleEpoch},
		{name: "unknown candidate", base: newCluster, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{From: "a", To: "zz", Epoch: 1}}, wantErr: ErrMemberNotFound},
		{name: "witness candidate", base: newCluster, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{From: "a", To: "w", Epoch: 1}}, wantErr: ErrNotEligible},
		{name: "to itself", base: newCluster, cmd: &pb.SetSwitchover{Switchover: &pb.Switchover{From: "a", To: "a", Epoch: 1}}, wantErr: ErrNotEligible},
	})
}

func TestApply_RegisterBouncer(t *testing.T) {
	agent := func(id string, lease int64, at int64) *pb.BouncerAgent {
		return &pb.BouncerAgent{Id: id, ContactLeaseMs: lease, RegisteredAtUnixMs: at, Databases: []string{"app"}}
	}
	runApplyCases(t, []applyCase{
		{
			name: "insert keeps order", base: newCluster,
			setup: []proto.Message{&pb.RegisterBouncer{Agent: agent("pgb3", 3000, 1)}, &pb.RegisterBouncer{Agent: agent("pgb1", 3000, 1)}},
			cmd:   &pb.RegisterBouncer{Agent: agent("pgb2", 3000, 1)},
			want: func(st *pb.ClusterState) {
				st.Bouncers = []*pb.BouncerAgent{agent("pgb1", 3000, 1), agent("pgb2", 3000, 1), agent("pgb3", 3000, 1)}
			},
			wantDelta: &pb.StateDelta{UpsertedBouncers: []*pb.BouncerAgent{agent("pgb2", 3000, 1)}},
		},
		{
			name: "changed lease", base: newCluster,
			setup:     []proto.Message{&pb.RegisterBouncer{Agent: agent("pgb1", 3000, 1)}},
			cmd:       &pb.RegisterBouncer{Agent: agent("pgb1", 5000, 2)},
			want:      func(st *pb.ClusterState) { st.Bouncers = []*pb.BouncerAgent{agent("pgb1", 5000, 2)} },
			wantDelta: &pb.StateDelta{UpsertedBouncers: []*pb.BouncerAgent{agent("pgb1", 5000, 2)}},
		},
		{
			name: "re-registration publishes nothing", base: newCluster,
			setup: []proto.Message{&pb.RegisterBouncer{Agent: agent("pgb1", 3000, 1)}},
			cmd:   &pb.RegisterBouncer{Agent: agent("pgb1", 3000, 99)},
		},
		{name: "no agent", base: newCluster, cmd: &pb.RegisterBouncer{}, wantErr: ErrBadCommand},
		{name: "no lease", base: newCluster, cmd: &pb.RegisterBouncer{Agent: agent("pgb1", 0, 1)}, wantErr: ErrBadCommand},
		{name: "negative lease", base: newCluster, cmd: &pb.RegisterBouncer{Agent: agent("pgb1", -1, 1)}, wantErr: ErrBadCommand},
	})
}

func TestApply_UnregisterBouncer(t *testing.T) {
	a := &pb.BouncerAgent{Id: "pgb1", ContactLeaseMs: 3000}
	b := &pb.BouncerAgent{Id: "pgb2", ContactLeaseMs: 3000}
	runApplyCases(t, []applyCase{
		{
			name: "accepted", base: newCluster,
			setup:     []proto.Message{&pb.RegisterBouncer{Agent: a}, &pb.RegisterBouncer{Agent: b}},
			cmd:       &pb.UnregisterBouncer{Id: "pgb1"},
			want:      func(st *pb.ClusterState) { st.Bouncers = []*pb.BouncerAgent{b} },
			wantDelta: &pb.StateDelta{RemovedBouncers: []string{"pgb1"}},
		},
		{name: "unknown", base: newCluster, cmd: &pb.UnregisterBouncer{Id: "pgb1"}, wantErr: ErrMemberNotFound},
	})
}

func TestApply_ExposePrimary(t *testing.T) {
	exposed := &pb.PrimaryAssignment{MemberId: "a", Epoch: 1, Timeline: 1, Reason: "bootstrap", AssignedAtUnixMs: 2000, Exposed: true}
	runApplyCases(t, []applyCase{
		{
			name: "accepted", base: newCluster, cmd: &pb.ExposePrimary{Epoch: 1},
			want:      func(st *pb.ClusterState) { st.Primary = exposed },
			wantDelta: &pb.StateDelta{Primary: exposed},
		},
		{
			name: "twice publishes nothing", base: newCluster,
			setup: []proto.Message{&pb.ExposePrimary{Epoch: 1}}, cmd: &pb.ExposePrimary{Epoch: 1},
		},
		{
			name: "new epoch is not exposed", base: newCluster,
			setup: []proto.Message{&pb.ExposePrimary{Epoch: 1}, &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "b"}},
			cmd:   &pb.ExposePrimary{Epoch: 1}, wantErr: ErrStaleEpoch,
		},
		{name: "future epoch", base: newCluster, cmd: &pb.ExposePrimary{Epoch: 2}, wantErr: ErrStaleEpoch},
		{name: "no primary", base: newInitialized, cmd: &pb.ExposePrimary{Epoch: 0}, wantErr: ErrStaleEpoch},
	})
}

func TestApply_SetSync(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name: "accepted sorted", base: newCluster,
			cmd:       &pb.SetSync{Epoch: 1, Members: []string{"c", "b"}},
			want:      func(st *pb.ClusterState) { st.Sync = &pb.SyncState{Epoch: 1, Members: []string{"b", "c"}} },
			wantDelta: &pb.StateDelta{Sync: &pb.SyncState{Epoch: 1, Members: []string{"b", "c"}}},
		},
		{
			name: "degraded with none", base: newCluster,
			setup:     []proto.Message{&pb.SetSync{Epoch: 1, Members: []string{"b"}}},
			cmd:       &pb.SetSync{Epoch: 1, Degraded: true},
			want:      func(st *pb.ClusterState) { st.Sync = &pb.SyncState{Epoch: 1, Degraded: true} },
			wantDelta: &pb.StateDelta{Sync: &pb.SyncState{Epoch: 1, Degraded: true}},
		},
		{
			name: "identical publishes nothing", base: newCluster,
			setup: []proto.Message{&pb.SetSync{Epoch: 1, Members: []string{"b", "c"}}},
			cmd:   &pb.SetSync{Epoch: 1, Members: []string{"c", "b"}},
		},
		{name: "stale epoch", base: newCluster, cmd: &pb.SetSync{Epoch: 0, Members: []string{"b"}}, wantErr: ErrStaleEpoch},
		{name: "future epoch", base: newCluster, cmd: &pb.SetSync{Epoch: 2, Members: []string{"b"}}, wantErr: ErrStaleEpoch},
		{name: "unknown member", base: newCluster, cmd: &pb.SetSync{Epoch: 1, Members: []string{"b", "zz"}}, wantErr: ErrMemberNotFound},
		{name: "the primary", base: newCluster, cmd: &pb.SetSync{Epoch: 1, Members: []string{"a"}}, wantErr: ErrBadCommand},
		{name: "duplicate", base: newCluster, cmd: &pb.SetSync{Epoch: 1, Members: []string{"b", "c", "b"}}, wantErr: ErrBadCommand},
		{name: "witness", base: newCluster, cmd: &pb.SetSync{Epoch: 1, Members: []string{"w"}}, wantErr: ErrNotEligible},
		{
			name: "no primary", base: newInitialized,
			setup: []proto.Message{&pb.UpsertMember{Member: pgMember("b")}},
			cmd:   &pb.SetSync{Epoch: 0, Members: []string{"b"}}, wantErr: ErrNotPrimary,
		},
	})
}

func TestApply_SetPaused(t *testing.T) {
	yes, no := true, false
	runApplyCases(t, []applyCase{
		{
			name: "pause", base: newCluster, cmd: &pb.SetPaused{Paused: true},
			want:      func(st *pb.ClusterState) { st.Paused = true },
			wantDelta: &pb.StateDelta{Paused: &yes},
		},
		{
			name: "resume", base: newCluster,
			setup:     []proto.Message{&pb.SetPaused{Paused: true}},
			cmd:       &pb.SetPaused{Paused: false},
			want:      func(st *pb.ClusterState) { st.Paused = false },
			wantDelta: &pb.StateDelta{Paused: &no},
		},
		{name: "already paused", base: newCluster, setup: []proto.Message{&pb.SetPaused{Paused: true}}, cmd: &pb.SetPaused{Paused: true}},
		{name: "already running", base: newCluster, cmd: &pb.SetPaused{}},
	})
}

func TestApply_SetSystemID(t *testing.T) {
	withID := func(st *pb.ClusterState) { st.Identity.SystemIdentifier = 7301 }
	runApplyCases(t, []applyCase{
		{
			name: "first", base: newCluster, cmd: &pb.SetSystemID{SystemIdentifier: 7301},
			want: withID,
			wantDelta: &pb.StateDelta{Identity: &pb.ClusterIdentity{
				Name: testInit.Name, Uuid: testInit.Uuid, CreatedAtUnixMs: testInit.AtUnixMs, SystemIdentifier: 7301,
			}},
		},
		{
			name: "same again publishes nothing", base: newCluster,
			setup: []proto.Message{&pb.SetSystemID{SystemIdentifier: 7301}},
			cmd:   &pb.SetSystemID{SystemIdentifier: 7301},
		},
		{
			name: "different", base: newCluster,
			setup: []proto.Message{&pb.SetSystemID{SystemIdentifier: 7301}},
			cmd:   &pb.SetSystemID{SystemIdentifier: 9999}, wantErr: ErrSystemIDMismatch,
		},
		{name: "zero", base: newCluster, cmd: &pb.SetSystemID{}, wantErr: ErrBadCommand},
		{name: "not initialized", base: newEmpty, cmd: &pb.SetSystemID{SystemIdentifier: 1}, wantErr: ErrNotInitialized},
	})
}

func TestApply_Entries(t *testing.T) {
	tests := []struct {
		name    string
		entry   *raft.Log
		wantErr error
	}{
		{"noop", &raft.Log{Type: raft.LogNoop}, nil},
		{"barrier", &raft.Log{Type: raft.LogBarrier, Data: []byte{0xff}}, nil},
		{"empty command", &raft.Log{Type: raft.LogCommand}, ErrBadCommand},
		{"unknown type", &raft.Log{Type: raft.LogCommand, Data: []byte{0xee, 1, 2}}, ErrUnknownCommand},
		{"type zero", &raft.Log{Type: raft.LogCommand, Data: []byte{0}}, ErrUnknownCommand},
		{"truncated body", &raft.Log{Type: raft.LogCommand, Data: []byte{byte(pb.CommandType_COMMAND_TYPE_REMOVE_MEMBER), 0x0a, 0x05, 'a'}}, ErrBadCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCluster(t)
			before := f.State()
			delta, err := runEntry(t, f, tc.entry)
			if !isErr(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if delta != nil {
				t.Fatalf("published %v", delta)
			}
			after := f.State()
			before.Index = after.Index
			if !proto.Equal(before, after) {
				t.Fatalf("state changed:\n got %v\nwant %v", after, before)
			}
		})
	}
}

func TestApplyCommand_UnknownMessage(t *testing.T) {
	f := newCluster(t)
	err := f.ApplyCommand(100, &pb.WatchEvent{})
	if !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("err = %v, want ErrUnknownCommand", err)
	}
	if got := f.State().Index; got == 100 {
		t.Fatalf("an unencodable command was applied")
	}
	if err := f.ApplyCommand(101, &pb.SetPaused{Paused: true}); err != nil {
		t.Fatal(err)
	}
	if st := f.State(); !st.Paused || st.Index != 101 {
		t.Fatalf("ApplyCommand: paused=%v index=%d", st.Paused, st.Index)
	}
}
