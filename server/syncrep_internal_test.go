package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// syncState is a cluster of n1 (primary), n2 and n3 in mode, with
// recorded as the FSM's synchronous standbys.
func syncState(mode pb.SynchronousMode, recorded ...string) *pb.ClusterState {
	return &pb.ClusterState{
		Config:  &pb.DynamicConfig{SynchronousMode: mode, SynchronousNodeCount: 1},
		Members: []*pb.Member{member("n1"), member("n2"), member("n3")},
		Primary: &pb.PrimaryAssignment{MemberId: "n1", Epoch: 3},
		Sync:    &pb.SyncState{Epoch: 3, Members: recorded},
	}
}

// replica is a pg_stat_replication row as the primary's agent reports it.
func replica(name, state, syncState string, replyAge time.Duration, flush uint64) *pb.ReplicaHealth {
	return &pb.ReplicaHealth{ApplicationName: name, State: state, SyncState: syncState,
		ReplyAgeMs: replyAge.Milliseconds(), FlushLsn: flush}
}

func TestDesiredSync_SilentStandbyIsNotStreaming(t *testing.T) {
	const bound = 2500 * time.Millisecond
	on := pb.SynchronousMode_SYNCHRONOUS_MODE_ON
	for _, tc := range []struct {
		name     string
		recorded []string
		replicas []*pb.ReplicaHealth
		want     []string
	}{
		{
			name:     "the recorded standby replies: kept",
			recorded: []string{"n2"},
			replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", 900*time.Millisecond, 0), replica("n3", "streaming", "async", 0, 0)},
			want:     []string{"n2"},
		},
		{
			name:     "the recorded standby streams but stopped replying: replaced",
			recorded: []string{"n2"},
			replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", 5*time.Second, 0), replica("n3", "streaming", "async", 100*time.Millisecond, 0)},
			want:     []string{"n3"},
		},
		{
			name:     "silent and no other standby: none",
			recorded: []string{"n2"},
			replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", 5*time.Second, 0)},
			want:     nil,
		},
		{
			name:     "both silent: none",
			recorded: []string{"n2"},
			replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", 3*time.Second, 0), replica("n3", "streaming", "async", time.Minute, 0)},
			want:     nil,
		},
		{
			name:     "at the bound: still fresh",
			recorded: []string{"n2"},
			replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", bound, 0), replica("n3", "streaming", "async", 0, 0)},
			want:     []string{"n2"},
		},
		{
			name:     "fresh but catching up: not streaming",
			replicas: []*pb.ReplicaHealth{replica("n2", "catchup", "async", 0, 0), replica("n3", "streaming", "async", 0, 0)},
			want:     []string{"n3"},
		},
		{
			name:     "nothing recorded: the lowest fresh ID",
			replicas: []*pb.ReplicaHealth{replica("n3", "streaming", "async", 0, 0), replica("n2", "streaming", "async", 0, 0)},
			want:     []string{"n2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := desiredSync(syncState(on, tc.recorded...), &pb.PostgresHealth{Replicas: tc.replicas}, bound)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("desiredSync = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPGSyncFor_StrictNeverStopsWaiting: with no standby that replies,
// mode "on" waits for nobody (after recording the degradation), mode
// "strict" keeps waiting, for every eligible member.
func TestPGSyncFor_StrictNeverStopsWaiting(t *testing.T) {
	silent := &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{
		replica("n2", "streaming", "sync", time.Minute, 0), replica("n3", "streaming", "potential", time.Minute, 0)}}
	for _, tc := range []struct {
		mode      pb.SynchronousMode
		wantNames []string
		wantCount int
	}{
		{pb.SynchronousMode_SYNCHRONOUS_MODE_ON, nil, 0},
		{pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT, []string{"n2", "n3"}, 1},
	} {
		st := syncState(tc.mode, "n2")
		want := desiredSync(st, silent, 2*time.Second)
		if len(want) != 0 {
			t.Fatalf("%v: desiredSync = %v with every standby silent", tc.mode, want)
		}
		names, count := pgSyncFor(st, want)
		if !slices.Equal(names, tc.wantNames) || count != tc.wantCount {
			t.Errorf("%v: synchronous_standby_names = FIRST %d %v, want FIRST %d %v", tc.mode, count, names, tc.wantCount, tc.wantNames)
		}
	}
	// One fresh standby: both modes wait for it alone.
	fresh := &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{
		replica("n2", "streaming", "sync", time.Minute, 0), replica("n3", "streaming", "potential", 0, 0)}}
	for _, mode := range []pb.SynchronousMode{pb.SynchronousMode_SYNCHRONOUS_MODE_ON, pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT} {
		st := syncState(mode, "n2")
		names, count := pgSyncFor(st, desiredSync(st, fresh, 2*time.Second))
		if !slices.Equal(names, []string{"n3"}) || count != 1 {
			t.Errorf("%v: synchronous_standby_names = FIRST %d %v, want FIRST 1 [n3]", mode, count, names)
		}
	}
}

// TestJoinedSync_OnlyOnceCaughtUp: a standby PostgreSQL already reports
// 'sync' enters the FSM's set only once it flushed the WAL position of
// the moment the setting changed (writes the old set acknowledged).
func TestJoinedSync_OnlyOnceCaughtUp(t *testing.T) {
	const target = 0x5000000
	for _, tc := range []struct {
		name string
		r    *pb.ReplicaHealth
		want []string
	}{
		{"sync, caught up", replica("n3", "streaming", "sync", 0, target), []string{"n3"}},
		{"sync, past the target", replica("n3", "streaming", "sync", 0, target+8), []string{"n3"}},
		{"sync, behind", replica("n3", "streaming", "sync", 0, target-1), nil},
		{"caught up, not yet sync", replica("n3", "streaming", "potential", 0, target), nil},
		{"not wanted", replica("n2", "streaming", "sync", 0, target), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := joinedSync(nil, []string{"n3"}, &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{tc.r}}, target)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("joinedSync = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReplyStaleAfter_AboveALiveStandbysSilence: the bound is about the
// ttl, and never so short that an idle standby that is alive (a reply
// every status interval, seen one probe interval late) looks silent.
func TestReplyStaleAfter_AboveALiveStandbysSilence(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    Timing
		want time.Duration
	}{
		{"fast", Timing{TTL: time.Second, LoopWait: 250 * time.Millisecond}, 2250 * time.Millisecond},
		{"default", Timing{TTL: 2 * time.Second, LoopWait: 500 * time.Millisecond}, 2500 * time.Millisecond},
		{"conservative", Timing{TTL: 10 * time.Second, LoopWait: 2 * time.Second}, 10 * time.Second},
	} {
		got := replyStaleAfter(tc.t)
		if got != tc.want {
			t.Errorf("%s: replyStaleAfter = %v, want %v", tc.name, got, tc.want)
		}
		if live := pgnode.ReceiverStatusInterval + tc.t.LoopWait; got < 2*pgnode.ReceiverStatusInterval || got <= live {
			t.Errorf("%s: bound %v does not clear a live standby's silence of up to %v", tc.name, got, live)
		}
	}
}

// TestSyncStandbyWentSilent_WakesTheRoundOnce: the probe that first sees
// a standby PostgreSQL waits for past the bound wakes the convergence
// round; later probes (it stays silent) and other standbys do not.
func TestSyncStandbyWentSilent_WakesTheRoundOnce(t *testing.T) {
	a, _ := actuatorOn(t, pgnode.DataDirInfo{})
	a.pgSync, a.pgSyncSet = []string{"n2"}, true
	bound := replyStaleAfter(a.s.opts.Timing)
	for _, tc := range []struct {
		name string
		h    *pb.PostgresHealth
		want bool
	}{
		{"fresh", &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", bound, 0)}}, false},
		{"just past the bound", &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", bound+time.Millisecond, 0)}}, true},
		{"a probe later", &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", bound+testTiming.LoopWait+time.Millisecond, 0)}}, false},
		{"not waited for", &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{replica("n3", "streaming", "async", bound+time.Millisecond, 0)}}, false},
		{"a standby's health", &pb.PostgresHealth{InRecovery: true, Replicas: []*pb.ReplicaHealth{replica("n2", "streaming", "sync", bound+time.Millisecond, 0)}}, false},
	} {
		if got := a.syncStandbyWentSilent(tc.h); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSyncTarget_ReadLaterWhenSetPGSyncCouldNot: setPGSync does not fail
// (a promotion) when it cannot read the WAL position; the next round
// reads it, and until then nobody joins.
func TestSyncTarget_ReadLaterWhenSetPGSyncCouldNot(t *testing.T) {
	a, pg := actuatorOn(t, pgnode.DataDirInfo{})
	a.pgSyncLSN = lsnUnknown
	if got := joinedSync(nil, []string{"n2"}, &pb.PostgresHealth{Replicas: []*pb.ReplicaHealth{
		replica("n2", "streaming", "sync", 0, 0x7000000)}}, lsnUnknown); got != nil {
		t.Fatalf("joined %v with the WAL position unknown", got)
	}
	pg.status = pgnode.Status{Up: true, CurrentLSN: 0x6000000}
	got, err := a.syncTarget(context.Background())
	if err != nil || got != 0x6000000 || a.pgSyncLSN != 0x6000000 {
		t.Fatalf("syncTarget = %#x, %v (kept %#x), want 0x6000000", got, err, a.pgSyncLSN)
	}
	pg.status.CurrentLSN = 0x8000000
	if got, _ := a.syncTarget(context.Background()); got != 0x6000000 {
		t.Fatalf("syncTarget read again: %#x, want the kept 0x6000000", got)
	}
}
